"""Wall time of the named steps of one run, so that ``--verbose`` can say where the time went.

    phases = Phases()
    with phases("read zip"):
        ...
    print(phases.report())

A step entered twice adds up. Functions that take an optional ``phases`` record nothing when given None.
"""

from __future__ import annotations

import contextlib
import time
from typing import Iterator


class Phases:
    """Seconds per step name, in the order the steps first ran."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0

    def add(self, name: str, seconds: float) -> None:
        """Record a step timed elsewhere (e.g. the imports, before any Phases existed)."""
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    def report(self) -> str:
        """One line per step, ``seconds  share  name``, and the total of the steps."""
        total = sum(self.seconds.values())
        width = max((len(name) for name in self.seconds), default=0)
        lines = [f"  {name:<{width}}  {s:7.2f} s  {100 * s / total if total else 0:5.1f}%"
                 for name, s in self.seconds.items()]
        lines.append(f"  {'total of the steps':<{width}}  {total:7.2f} s")
        return "\n".join(lines)


def record(phases: Phases | None, name: str) -> contextlib.AbstractContextManager:
    """``phases(name)``, or a context that records nothing when ``phases`` is None."""
    return phases(name) if phases is not None else contextlib.nullcontext()
