"""dvc.yaml's code deps: every module of pipeline/ that a stage's command imports (at the top of a module or
inside a function) is listed, itself or through its folder, so that DVC reruns the stage when its code
changes. Read from the source (ast), so the test needs neither DVC nor a run."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
STAGES = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


def module_file(name: str) -> Path | None:
    """pipeline.x.y -> pipeline/x/y.py (or its package's __init__.py); None outside pipeline."""
    if name != "pipeline" and not name.startswith("pipeline."):
        return None
    base = REPO / Path(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def imported(path: Path, everywhere: bool = False) -> set[Path]:
    """The pipeline modules ``path`` imports at the top of the module ("from pipeline import x" included), or
    anywhere in its code with ``everywhere``."""
    found = set()
    tree = ast.parse(path.read_text())
    for node in (ast.walk(tree) if everywhere else tree.body):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            file = module_file(name)
            if file is not None:
                found.add(file)
    return found


# config.py imports the losses, augmentations and models inside _build_train only, to check the train section:
# a stage that never builds it (download, prepare, generate, score) does not run that code
TOP_ONLY = {REPO / "pipeline" / "config.py"}


def closure(start: Path) -> set[Path]:
    """``start`` and every pipeline module it imports, directly or not (function-level imports included)."""
    seen, todo = set(), [start]
    while todo:
        path = todo.pop()
        if path not in seen:
            seen.add(path)
            todo.extend(imported(path, everywhere=path not in TOP_ONLY) - seen)
    return seen


def test_the_import_reader_sees_function_level_imports():
    # train imports the reference statistics inside a function: a reader of the top only would miss it
    assert REPO / "pipeline" / "metrics" / "scoring.py" in closure(REPO / "pipeline" / "train.py")


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_every_module_a_stage_imports_is_a_dep(stage):
    spec = STAGES[stage]
    module = re.search(r"python -m (pipeline\.\w+)", spec["cmd"]).group(1)
    deps = [REPO / d for d in spec["deps"]]
    missing = sorted(
        str(path.relative_to(REPO)) for path in closure(module_file(module))
        if path.name != "__init__.py" or path.parent == REPO / "pipeline" / "models"  # the registry lives there
        if not any(path == d or d in path.parents for d in deps)
    )
    assert not missing, f"dvc.yaml stage {stage!r} imports these modules without listing them in deps: {missing}"


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_no_stage_lists_a_module_it_does_not_import(stage):
    """A module listed for nothing would rerun the stage for nothing (train listed score.py: editing the score
    stage retrained the model)."""
    spec = STAGES[stage]
    module = re.search(r"python -m (pipeline\.\w+)", spec["cmd"]).group(1)
    used = closure(module_file(module))
    extra = [d for d in spec["deps"] if d.startswith("pipeline/") and d.endswith(".py") and REPO / d not in used]
    assert not extra, f"dvc.yaml stage {stage!r} lists modules its command never imports: {extra}"
