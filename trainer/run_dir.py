"""A run directory: where a config's runs go, creating one, the files a run needs besides its weights, and
whether a run can be resumed (train.resume: auto finds the newest unfinished run of the same config)."""
from __future__ import annotations

import contextlib
import datetime
import logging
import os
import shutil

from core.errors import UserError
from core.loader import load_config, save_config
from core.paths import check_new_dir, write_json_atomically, write_text_atomically
from core.schema import Config
from trainer.checkpointing import TRAIN_DIR, latest
from trainer.families import Prepared, family

log = logging.getLogger(__name__)


def runs_root(config_path: str, root: str = "runs") -> str:
    """Where the runs of a config go: runs/<config name>."""
    return os.path.join(root, os.path.splitext(os.path.basename(config_path))[0])


def default_run_dir(config_path: str, root: str = "runs") -> str:
    return os.path.join(runs_root(config_path, root), datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))


def make_run_dir(path: str) -> None:
    """A new or empty run directory, with its parents (the lock file, written next, proves it writable)."""
    check_new_dir(path, "--run-dir", create_parents=True)
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise UserError(f"{path}: cannot create the run directory or write into it ({e.strerror})") from None


@contextlib.contextmanager
def starting_run_dir(path: str):
    """Around making a run directory and writing its first files (lock, config.yaml, vocabulary, labels): a
    write that fails (a full disk) leaves no half-made directory behind, which would block the same command
    once there is space, and is one line."""
    existed = os.path.isdir(path)
    try:
        yield
    except UserError:  # one line already (make_run_dir, or an atomic write: core.paths.written_atomically)
        if not existed:
            shutil.rmtree(path, ignore_errors=True)
        raise
    except OSError as e:
        if not existed:
            shutil.rmtree(path, ignore_errors=True)
        raise UserError(f"{path}: cannot write the run directory's files ({e.strerror or e}); nothing was kept; "
                        "free space and run the same command again") from None


def write_run_files(cfg: Config, prepared: Prepared, run_dir: str) -> None:
    """config.yaml, the vocabulary, labels.json and a Hugging Face encoder's config: what load_run needs
    besides the weights."""
    save_config(prepared.config_to_save(cfg), os.path.join(run_dir, "config.yaml"))
    family(cfg.model.name).save(prepared, run_dir)
    write_json_atomically(os.path.join(run_dir, "labels.json"), prepared.data.label_names, "labels")


def is_finished(run_dir: str) -> bool:
    return os.path.exists(os.path.join(run_dir, "metrics.json"))


def resumable(run_dir: str) -> bool:
    """Whether run_dir is an unfinished run with a training checkpoint to continue from."""
    return not is_finished(run_dir) and latest(os.path.join(run_dir, "checkpoints"), TRAIN_DIR) is not None


def check_resumable(run_dir: str) -> None:
    if not os.path.exists(os.path.join(run_dir, "config.yaml")):
        raise UserError(f"{run_dir}: not a run directory (no config.yaml)")
    if is_finished(run_dir):
        raise UserError(f"{run_dir}: this run has finished (metrics.json exists); nothing to resume")
    if not resumable(run_dir):
        raise UserError(f"{run_dir}: nothing to resume: it stopped before its first checkpoint; start it again "
                        f"with --config {os.path.join(run_dir, 'config.yaml')} and another --run-dir, or remove "
                        f"{run_dir} first")


def find_resumable(cfg: Config, candidates: list[str]) -> str | None:
    """The first of `candidates` that is an unfinished run of exactly this config (train.resume: auto)."""
    for run_dir in candidates:
        if os.path.isdir(run_dir) and resumable(run_dir):
            try:
                saved = load_config(os.path.join(run_dir, "config.yaml"))
            except UserError as e:
                log.info("not resuming %s: %s", run_dir, e)
                continue
            if saved == cfg:
                return run_dir
            log.info("not resuming %s: its config differs from this one", run_dir)
    return None


def rewrite_history_csv(path: str, history: list[dict]) -> None:
    """history.csv as of the restored checkpoint (epochs logged after it are done again), atomically."""
    if not history:  # CSVLogger writes the header with the first epoch
        if os.path.exists(path):
            os.remove(path)
        return
    keys = sorted({k for h in history for k in h})
    lines = [",".join(["epoch"] + keys)] + [",".join([str(epoch)] + [repr(h.get(k, "")) for k in keys])
                                            for epoch, h in enumerate(history)]
    write_text_atomically(path, "\n".join(lines) + "\n", "history")
