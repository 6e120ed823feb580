"""Checks of the files and folders a command will write, made before any work: nothing is overwritten,
and a folder that is missing or read-only is one line at once, not a traceback after the work is done."""
from __future__ import annotations

import contextlib
import json
import os
import shutil

from core.errors import UserError


def _check_parent(path: str, option: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UserError(f"{option} {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise UserError(f"{option} {path}: cannot write into {folder} (permission denied)")


def check_new_file(path: str | None, option: str = "--output") -> None:
    """A file to create: it must not exist, and its folder must exist and be writable."""
    if not path:
        return
    if os.path.exists(path):
        raise UserError(f"{path}: exists; choose another {option} (nothing is overwritten)")
    _check_parent(path, option)


def check_new_dir(path: str, option: str = "--out", create_parents: bool = False) -> None:
    """A folder to fill: new or empty, and writable (or creatable: its parent folder exists and is writable,
    or, with create_parents, will be created too)."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise UserError(f"{path}: is a file, not a folder; choose another {option} (nothing is overwritten)")
    if os.path.exists(path) and os.listdir(path):
        raise UserError(f"{path}: exists and is not empty; choose another {option} (nothing is overwritten)")
    if os.path.isdir(path):
        if not os.access(path, os.W_OK):
            raise UserError(f"{option} {path}: cannot write into it (permission denied)")
        return
    if not create_parents:
        _check_parent(path, option)


@contextlib.contextmanager
def written_atomically(path: str, what: str = "--output", faults: tuple = ()):
    """Yields a temporary name beside `path` (a file or a folder) to write; it becomes `path` only once the block
    has finished. If writing fails (a full disk: OSError, or one of `faults`), the partial output is removed and
    the failure is one line: nothing half-written is left to pass for a result or to block the next try."""
    temporary = f"{path}.partial-{os.getpid()}"
    try:
        yield temporary
        os.replace(temporary, path)
    except (OSError, *faults) as e:
        _remove(temporary)
        reason = getattr(e, "strerror", None) or getattr(e, "message", None) or str(e).splitlines()[0][:200]
        raise UserError(f"{what} {path}: could not be written ({reason}); nothing was left behind") from None
    except BaseException:
        _remove(temporary)
        raise


def write_text_atomically(path: str, text: str, what: str = "--output") -> None:
    """`text` into `path` through written_atomically: the whole file or, on failure, nothing (one line)."""
    with written_atomically(path, what) as temporary, open(temporary, "w", encoding="utf-8") as f:
        f.write(text)


def write_json_atomically(path: str, value, what: str = "--output") -> None:
    write_text_atomically(path, json.dumps(value, indent=2, ensure_ascii=False) + "\n", what)


def _remove(path: str) -> None:
    if os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


# A run directory is used by one process at a time: trainer.checkpointing.run_dir_lock holds this file (its
# process id); scripts/run_experiments.py reads it without loading TensorFlow.
LOCK_FILE = ".lock"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def lock_owner(run_dir: str) -> int | None:
    """The id of another live process that holds run_dir's lock (None: no lock, our own, or a stale one)."""
    try:
        with open(os.path.join(run_dir, LOCK_FILE), encoding="utf-8") as f:
            owner = int(f.read().strip() or 0)
    except (OSError, ValueError):
        return None
    return owner if owner and owner != os.getpid() and pid_alive(owner) else None


def in_use(run_dir: str, owner: int) -> UserError:
    return UserError(f"{run_dir}: in use by another process (pid {owner}); wait for it to end or stop it (a run "
                     "directory is used by one process at a time)")
