"""The tasks a run can be (config key `task`), each told by the run story (trainer/story.py): adding one is its
module (a Task) plus one entry here."""
from __future__ import annotations

from core.schema import Config
from trainer.lm_run import LanguageModelTask
from trainer.run import ClassifierTask
from trainer.story import Task, run

TASKS: dict[str, type[Task]] = {"classify": ClassifierTask, "lm": LanguageModelTask}


def train(cfg: Config, run_dir: str, resume: bool = False) -> dict:
    """Runs the config's task end to end in run_dir (or continues it, with `resume`); returns the final metrics,
    also written to metrics.json."""
    return run(TASKS[cfg.task](cfg), run_dir, resume)
