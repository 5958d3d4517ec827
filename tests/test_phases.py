"""Where a run's time goes (--verbose of generate and score): the step timer and the process's age."""

import subprocess
import sys
import time

import pytest

from pipeline.phases import Phases, process_age, record, run_phases


def test_steps_add_up_in_first_run_order_and_none_records_nothing():
    phases = Phases()
    with phases("b"):
        time.sleep(0.02)
    phases.add("a", 1.5)
    with record(phases, "b"):
        time.sleep(0.02)
    with record(None, "c"):
        pass
    assert list(phases.seconds) == ["b", "a"]
    assert 0.04 <= phases.seconds["b"] < 1.0 and phases.seconds["a"] == 1.5
    lines = phases.report().splitlines()
    assert lines[0].split()[0] == "b" and lines[1].split()[0] == "a"
    assert lines[-1].split()[:4] == ["total", "of", "the", "steps"]
    assert float(lines[-1].split()[4]) == pytest.approx(1.5 + phases.seconds["b"], abs=0.01)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads Linux's /proc")
def test_process_age_counts_from_the_start_of_the_process():
    code = "import time; time.sleep(0.5); from pipeline.phases import process_age; print(process_age())"
    age = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert 0.45 <= age < 30  # the sleep, plus the interpreter's start (clock ticks: 0.01 s)
    assert process_age() > 0.5  # this test process started well before this line


def test_run_phases_starts_with_the_imports_or_is_none():
    assert run_phases(False) is None
    phases = run_phases(True)
    if sys.platform.startswith("linux"):
        assert list(phases.seconds) == ["interpreter start + imports"]
        assert phases.seconds["interpreter start + imports"] > 0.5
