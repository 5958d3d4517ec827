"""Wall time of the named steps of one run, so that ``--verbose`` can say where the time went.

    phases = Phases()
    with phases("read zip"):
        ...
    print(phases.report())

A step entered twice adds up. Functions that take an optional ``phases`` record nothing when given None.
"""

from __future__ import annotations

import contextlib
import os
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


def process_age() -> float | None:
    """Seconds since this process started (interpreter start and imports, when called first thing in ``main``),
    to 0.01 s; None where the operating system does not say (Linux's /proc is read)."""
    try:
        with open("/proc/self/stat") as fh:
            # the command name (2nd field) may hold spaces: the fields after its ")" start with the 3rd
            start_ticks = int(fh.read().rsplit(")", 1)[1].split()[19])  # 22nd field: start, clock ticks after boot
        with open("/proc/uptime") as fh:
            uptime = float(fh.read().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError, AttributeError):  # no /proc (macOS, Windows) or no sysconf
        return None


def run_phases(verbose: bool) -> Phases | None:
    """For a stage's ``--verbose``: a Phases whose first step is the interpreter start and imports (where the
    system says; see :func:`process_age`), so call it first thing in ``main``; None when not verbose."""
    if not verbose:
        return None
    phases = Phases()
    age = process_age()
    if age is not None:
        phases.add("interpreter start + imports", age)
    return phases


def record(phases: Phases | None, name: str) -> contextlib.AbstractContextManager:
    """``phases(name)``, or a context that records nothing when ``phases`` is None."""
    return phases(name) if phases is not None else contextlib.nullcontext()
