"""Checks of the files and folders a command will write, made before any work: nothing is overwritten,
and a folder that is missing or read-only is one line at once, not a traceback after the work is done."""
from __future__ import annotations

import os

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
    if os.path.exists(path) and (not os.path.isdir(path) or os.listdir(path)):
        raise UserError(f"{path}: exists and is not empty; choose another {option} (nothing is overwritten)")
    if os.path.isdir(path):
        if not os.access(path, os.W_OK):
            raise UserError(f"{option} {path}: cannot write into it (permission denied)")
        return
    if not create_parents:
        _check_parent(path, option)
