"""Dataclass fields with the checks the config loader applies (choices, ranges, aliases)."""
from __future__ import annotations

from dataclasses import field


def setting(default, **checks):
    """A dataclass field with range checks: choices, min, max, min_exclusive; aliases maps booleans to
    values (for keys that were booleans once); one_or_many reads a single value as a list of one."""
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=checks)
    return field(default=default, metadata=checks)
