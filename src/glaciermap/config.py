"""Configuration: load, fill defaults from the JSON schema, validate, and fail naming the key."""

from __future__ import annotations

import copy
from pathlib import Path

import jsonschema
import yaml

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    pass


def load_schema(path: str | Path = SCHEMA_PATH) -> dict:
    with open(path) as f:
        return yaml.safe_load(f)


def _stringify_keys(obj):
    # YAML turns an unquoted epoch name like 2023 into an int; names are strings everywhere else.
    if isinstance(obj, dict):
        return {str(k): _stringify_keys(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_stringify_keys(v) for v in obj]
    return obj


def _fill_defaults(instance, schema, root):
    """Fill defaults of ``properties`` recursively (also inside objects that were defaulted)."""
    if "$ref" in schema:
        ref = schema["$ref"].split("/")[-1]
        schema = {**root["$defs"][ref], **{k: v for k, v in schema.items() if k != "$ref"}}
    if not isinstance(instance, dict):
        return
    for key, sub in schema.get("properties", {}).items():
        if key not in instance and "default" in sub:
            instance[key] = copy.deepcopy(sub["default"])
        if key in instance:
            _fill_defaults(instance[key], sub, root)
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        for key, value in instance.items():
            if key not in schema.get("properties", {}):
                _fill_defaults(value, extra, root)


def _key_path(error) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "<top level>"


def validate_config(config: dict, schema: dict | None = None) -> dict:
    """Return a validated copy of ``config`` with every default filled in.

    Raises :class:`ConfigError` listing each offending key, e.g. ``selection.max_cloud_fraction: 'a' is not of type 'number'``.
    """
    schema = schema or load_schema()
    cfg = _stringify_keys(copy.deepcopy(config or {}))
    _fill_defaults(cfg, schema, schema)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(cfg), key=lambda e: list(e.absolute_path))
    if errors:
        lines = []
        for e in errors:
            if e.validator == "additionalProperties":
                lines.append(f"{_key_path(e)}: {e.message} (unknown key; see workflow/schemas/config.schema.yaml)")
            else:
                lines.append(f"{_key_path(e)}: {e.message}")
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines))
    _check_semantics(cfg)
    return cfg


def _check_semantics(cfg: dict) -> None:
    problems = []
    for name, ep in cfg["epochs"].items():
        if not _safe_name(name):
            problems.append(f"epochs.{name}: epoch names may only use letters, digits, '.', '_' and '-'")
        if ep.get("dhdt") and ep["dhdt"] not in cfg["dhdt"]:
            problems.append(f"epochs.{name}.dhdt: '{ep['dhdt']}' is not a key of dhdt ({', '.join(cfg['dhdt'])})")
        n = 5 if ep.get("inventory_year") else 10
        for k in ("start", "end"):
            if len(ep[k]) != n:
                fmt = "MM-DD" if n == 5 else "YYYY-MM-DD"
                problems.append(f"epochs.{name}.{k}: '{ep[k]}' must be {fmt}")
    for key in ("from", "to"):
        name = cfg.get("change", {}).get(key)
        if name is not None and name not in cfg["epochs"]:
            problems.append(f"change.{key}: '{name}' is not an epoch ({', '.join(cfg['epochs'])})")
    tp, gp = cfg.get("train", {}).get("patch_size"), cfg["grid"]["patch_size"]
    if tp is not None and tp > gp:
        problems.append(f"train.patch_size: {tp} is larger than grid.patch_size {gp} (the cube margin is grid.patch_size/2)")
    for key in ("dem",):
        problems += _check_raster(key, cfg[key])
    for name, spec in cfg["dhdt"].items():
        problems += _check_raster(f"dhdt.{name}", spec)
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))


def _check_raster(key: str, spec: dict) -> list[str]:
    if "path" in spec and ("stac_item" in spec or "asset" in spec):
        return [f"{key}: give either path or stac_item + asset, not both"]
    if "path" not in spec and not ("stac_item" in spec and "asset" in spec):
        return [f"{key}: needs path, or stac_item and asset"]
    return []


def _safe_name(name: str) -> bool:
    import re

    return re.fullmatch(r"[A-Za-z0-9_.-]+", name) is not None


def load_config(path: str | Path) -> dict:
    with open(path) as f:
        return validate_config(yaml.safe_load(f) or {})
