"""Loading a config: `load_config(path, overrides)` reads a YAML file (following `base:` chains), applies `--set`
overrides, rejects unknown keys and wrong types with a message that names the key, resolves paths relative to
the file that wrote them and fills every default that depends on the backbone or the checkpoint, so that the
config is final once loaded and the config.yaml written into a run directory reproduces the run.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import types
import typing
from typing import Any

import yaml

from core.errors import UserError
from core.paths import write_text_atomically
from core.registry import LSTM_RADII, METHODS
from core.rules import resolve_defaults
from core.schema import (
    PATH_KEYS,
    PATH_OR_NAME_KEYS,
    REGULARIZERS,
    SCALARS,
    SECTIONS,
    Config,
    DataConfig,
    DistributeConfig,
    EvalConfig,
    LMConfig,
    ModelConfig,
    RegularizerConfig,
    TrainConfig,
)
from core.settings import Radii


def regularizer(name: str = "none", weight: float = 1.0, radii: Radii = LSTM_RADII, **settings) -> RegularizerConfig:
    """A regularizer entry built in code (as a config file would give it), defaults resolved for `radii`."""
    return _build_regularizer({"name": name, "weight": weight, **settings}, "regularizer", radii)


# ----------------------------------------------------------------------------- reading YAML
class _StrictLoader(yaml.SafeLoader):
    """yaml.safe_load that refuses a key given twice in one mapping (PyYAML keeps the last silently)."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor`: merged by SafeLoader, may be overridden
                continue
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise UserError(f"{self.name}: line {key_node.start_mark.line + 1}: key '{key}' is given twice "
                                f"in one mapping (first on line {seen[key] + 1})")
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep)


def read_yaml(path: str, what: str = "config file") -> dict:
    """A YAML mapping from a file (a key given twice refused); every problem one line naming the file."""
    try:
        with open(path, encoding="utf-8") as f:
            raw = yaml.load(f, Loader=_StrictLoader)  # noqa: S506  (a SafeLoader)
    except FileNotFoundError:
        raise UserError(f"{path}: {what} not found") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory, not a {what}") from None
    except PermissionError:
        raise UserError(f"{path}: {what} cannot be read (permission denied)") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: {what} is not UTF-8 text") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise UserError(f"{path}{where}: malformed YAML: {problem}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise UserError(f"{path}: the top level must be a mapping of sections, got {type(raw).__name__}")
    return raw


def _unknown_key(key: str, valid, where: str) -> UserError:
    close = difflib.get_close_matches(str(key), list(valid), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return UserError(f"{where}: unknown key '{key}'{hint}; valid keys: {', '.join(valid)}")


def _resolve_paths(raw: dict, base_dir: str, where: str) -> None:
    for table, must_exist in ((PATH_KEYS, False), (PATH_OR_NAME_KEYS, True)):
        for section, keys in table.items():
            values = raw.get(section)
            if not isinstance(values, dict):
                continue
            for key in keys:
                if key in values:
                    values[key] = _resolved(values[key], base_dir, must_exist)


def _resolved(value, base_dir: str, must_exist: bool = False):
    """A path (or each path of a list) relative to base_dir made absolute; with must_exist, only if it exists."""
    if isinstance(value, list):
        return [_resolved(v, base_dir, must_exist) for v in value]
    if isinstance(value, str) and value and not os.path.isabs(value):
        resolved = os.path.normpath(os.path.join(base_dir, value))
        if not must_exist or os.path.exists(resolved):
            return resolved
    return value


def merge(base: dict, top: dict) -> dict:
    """Deep-merge mappings; lists and scalars in `top` replace those in `base`."""
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def _load_chain(path: str, seen: tuple[str, ...] = ()) -> dict:
    path = os.path.abspath(path)
    if path in seen:
        chain = " -> ".join(seen + (path,))
        raise UserError(f"{path}: 'base:' cycle: {chain}")
    raw = read_yaml(path)
    for section in raw:
        if section not in SECTIONS and section not in SCALARS and section != "base":
            raise _unknown_key(section, ["base", *SCALARS, *SECTIONS], path)
    _resolve_paths(raw, os.path.dirname(path), path)
    base = raw.pop("base", None)
    if base is None:
        return raw
    if not isinstance(base, str):
        raise UserError(f"{path}: 'base' must be a file name, got {base!r}")
    base_path = base if os.path.isabs(base) else os.path.join(os.path.dirname(path), base)
    inherited = _load_chain(base_path, seen + (path,))
    mine, theirs = raw.get("regularizer"), inherited.get("regularizer")
    if isinstance(mine, dict) and isinstance(theirs, dict) and "name" in mine and mine["name"] != theirs.get("name"):
        inherited["regularizer"] = {}  # another method: the base's knobs are not its knobs
    return merge(inherited, raw)


# ----------------------------------------------------------------------------- overrides
def _apply_override(raw: dict, assignment: str) -> None:
    """Apply one `section.key=value` (or `regularizer.N.key=value`); value parsed as a YAML scalar."""
    where = f"--set {assignment}"
    if "=" not in assignment:
        raise UserError(f"{where}: expected section.key=value")
    dotted, text = assignment.split("=", 1)
    parts = dotted.strip().split(".")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        raise UserError(f"{where}: the value is not valid YAML") from None
    section = parts[0]
    if section not in SECTIONS and section not in SCALARS:
        raise _unknown_key(section, [*SCALARS, *SECTIONS], where)
    if len(parts) == 1:
        raw[section] = value
        return
    if section == "regularizer":
        regs = raw.get("regularizer")
        regs = [dict(r) for r in regs] if isinstance(regs, list) else [dict(regs or {})]
        if parts[1].isdigit():
            index, parts = int(parts[1]), parts[1:]
        elif len(regs) == 1:
            index = 0
        else:
            raise UserError(f"{where}: there are {len(regs)} regularizers; name one as regularizer.N.key")
        if index >= len(regs) or len(parts) != 2:
            raise UserError(f"{where}: expected regularizer.key=value or regularizer.N.key=value "
                            f"with N < {len(regs)}")
        if parts[1] == "name" and regs[index].get("name") != value:
            regs[index] = {}  # another method: the settings given for the first one are not its settings
        regs[index][parts[1]] = value
        raw["regularizer"] = regs
        return
    if len(parts) != 2:
        raise UserError(f"{where}: expected section.key=value")
    valid = [f.name for f in dataclasses.fields(SECTIONS[section])]
    if parts[1] not in valid:
        raise _unknown_key(parts[1], valid, f"{where}: section '{section}'")
    target = raw.get(section)
    raw[section] = dict(target) if isinstance(target, dict) else {}
    if parts[1] in PATH_KEYS.get(section, ()):
        value = _resolved(value, os.getcwd())
    elif parts[1] in PATH_OR_NAME_KEYS.get(section, ()):
        value = _resolved(value, os.getcwd(), must_exist=True)
    raw[section][parts[1]] = value


# ----------------------------------------------------------------------------- typing
NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp, key: str):
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _coerce(value, args[0], key)
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise UserError(f"{key}: expected a list of {_type_name(item)}, got {value!r}")
        return [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is float and isinstance(value, str) and NUMBER.fullmatch(value.strip()):
        value = float(value)  # YAML 1.1 (PyYAML) reads 1e-2 and 5e+0 as strings: they are numbers to a user
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise UserError(f"{key}: expected a finite number, got {value!r}")
        return float(value)
    if tp is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if tp is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
        raise UserError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    return value


def _check_range(value, checks: dict, key: str) -> None:
    if value is None:
        return
    if "choices" in checks and value not in checks["choices"]:
        raise UserError(f"{key}: '{value}' is not one of: {', '.join(checks['choices'])}")
    if "min" in checks and value < checks["min"]:
        raise UserError(f"{key}: {value} is below the minimum {checks['min']}")
    if "max" in checks and value > checks["max"]:
        raise UserError(f"{key}: {value} is above the maximum {checks['max']}")
    if "min_exclusive" in checks and value <= checks["min_exclusive"]:
        raise UserError(f"{key}: {value} must be greater than {checks['min_exclusive']}")


def _build(cls, values, where: str):
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise UserError(f"{where}: expected a mapping of keys, got {values!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        if key not in fields:
            raise _unknown_key(key, list(fields), f"section '{where}'")
        aliases = fields[key].metadata.get("aliases", {})
        if isinstance(value, bool) and value in aliases:  # e.g. mixed_precision: true (float16)
            value = aliases[value]
        if fields[key].metadata.get("one_or_many") and isinstance(value, str):  # one file, or a list of them
            value = [value]
        value = _coerce(value, hints[key], f"{where}.{key}")
        _check_range(value, fields[key].metadata, f"{where}.{key}")
        kwargs[key] = value
    return cls(**kwargs)


def _build_regularizer(values, where: str, radii: Radii | None = None) -> RegularizerConfig:
    """An entry of the regularizer section: name and weight, the rest the method's own settings; a key the
    method does not have is an error naming the method and the key."""
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise UserError(f"{where}: expected a mapping of keys, got {values!r}")
    values = dict(values)
    name = _coerce(values.pop("name", "none"), str, f"{where}.name")
    _check_range(name, {"choices": REGULARIZERS}, f"{where}.name")
    weight = _coerce(values.pop("weight", 1.0), float, f"{where}.weight")
    _check_range(weight, {"min": 0.0}, f"{where}.weight")
    if name == "none":
        params = None
        if values:
            raise UserError(f"{where}.{next(iter(values))}: none has no such setting (its settings besides name and "
                            "weight: none)")
    else:
        own = [f.name for f in dataclasses.fields(METHODS[name].params)]
        foreign = [key for key in values if key not in own]
        if foreign:
            raise UserError(f"{where}.{foreign[0]}: {name} has no such setting (its settings besides name and "
                            f"weight: {', '.join(own)})")
        params = _build(METHODS[name].params, values, where)
        if radii is not None:
            params.resolve(radii)
    return RegularizerConfig(name, weight, params)


# ----------------------------------------------------------------------------- public API
def config_from_dict(raw: dict, source: str = "config") -> Config:
    """The checked, resolved config of `raw` (read from `source`): a mistake is one UserError naming the file and
    the key."""
    try:
        return _config_from_dict(raw, source)
    except UserError as e:
        if source == "config" or str(e).startswith(source):
            raise
        raise UserError(f"{source}: {e}") from None


def _config_from_dict(raw: dict, source: str) -> Config:
    for section in raw:
        if section not in SECTIONS and section not in SCALARS:
            raise _unknown_key(section, [*SCALARS, *SECTIONS], source)
    task = _coerce(raw.get("task", "classify"), str, "task")
    _check_range(task, {"choices": SCALARS["task"]}, "task")
    regs = raw.get("regularizer")
    regs = regs if isinstance(regs, list) else [regs]
    if not regs:
        raise UserError(f"{source}: 'regularizer' is an empty list; use name: none to train plainly")
    cfg = Config(
        task=task,
        data=_build(DataConfig, raw.get("data"), "data"),
        model=_build(ModelConfig, raw.get("model"), "model"),
        regularizer=[_build_regularizer(r, "regularizer" if len(regs) == 1 else f"regularizer[{i}]")
                     for i, r in enumerate(regs)],
        train=_build(TrainConfig, raw.get("train"), "train"),
        eval=_build(EvalConfig, raw.get("eval"), "eval"),
        distribute=_build(DistributeConfig, raw.get("distribute"), "distribute"),
        lm=_build(LMConfig, raw.get("lm"), "lm"),
    )
    resolve_defaults(cfg, source)
    return cfg


def load_config(path: str, overrides: typing.Sequence[str] = ()) -> Config:
    raw = _load_chain(path)
    for assignment in overrides:
        _apply_override(raw, assignment)
    return config_from_dict(raw, source=path)


def config_to_dict(cfg: Config) -> dict:
    out = dataclasses.asdict(cfg)
    out["regularizer"] = [{"name": reg.name, "weight": reg.weight,
                           **(dataclasses.asdict(reg.params) if reg.params is not None else {})}
                          for reg in cfg.regularizer]
    if len(out["regularizer"]) == 1:
        out["regularizer"] = out["regularizer"][0]
    return out


def flatten(tree, prefix="") -> dict:
    """A config's dict (config_to_dict) as {"section.key": value}; a list of regularizers as section.0.key."""
    if isinstance(tree, dict):
        return {k: v for key, value in tree.items() for k, v in flatten(value, f"{prefix}{key}.").items()}
    if isinstance(tree, list) and tree and isinstance(tree[0], dict):
        return {k: v for i, value in enumerate(tree) for k, v in flatten(value, f"{prefix}{i}.").items()}
    return {prefix.rstrip("."): tree}


def save_config(cfg: Config, path: str) -> None:
    write_text_atomically(path, yaml.safe_dump(config_to_dict(cfg), sort_keys=False, allow_unicode=True), "config")
