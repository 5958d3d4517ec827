"""The train stage's parts: the step (step.py), the run (run.py), its plan and time budget (budget.py), what it
shows of itself (monitor.py: sample grids, MiFID during training) and resuming (resume.py). The loop and the
command line are pipeline/train.py."""
