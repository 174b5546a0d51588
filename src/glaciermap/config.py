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
    if "ablation" in cfg:  # the section of earlier versions: say what replaced it
        raise ConfigError("invalid configuration:\n  ablation: replaced by named model variants; write the ablation "
                          "as an entry of `models`, e.g. models: {dl4gam: {}, dl4gam_no_dhdt: {drop_channels: [dhdt], "
                          "members: 1}}, or leave it out (README \"Model variants\")")
    if errors:
        lines = []
        for e in errors:
            if e.validator == "additionalProperties":
                lines.append(f"{_key_path(e)}: {e.message} (unknown key; see workflow/schemas/config.schema.yaml)")
            elif e.validator == "required":
                missing = [k for k in e.validator_value if k not in e.instance]
                where = _key_path(e)
                for k in missing:
                    key = k if where == "<top level>" else f"{where}.{k}"
                    lines.append(f"{key}: required key missing ({_describe(schema, key)})")
            else:
                lines.append(f"{_key_path(e)}: {e.message}")
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines))
    _resolve_change_epochs(cfg)
    ac = cfg.setdefault("area_change", {})
    default = cfg.get("model", {}).get("labels", GLACIER_LABELS)
    binary = [m for m, e in (cfg.get("models") or {}).items() if (e or {}).get("labels", default) == GLACIER_LABELS]
    if ac.get("models") is None:
        ac["models"] = binary[:1]  # the first binary model variant (none: a region without area change)
    if ac.get("compare") is None:  # every binary model (a K-class one has no glacier area)
        ac["compare"] = binary
    _check_semantics(cfg)
    return cfg


def _resolve_change_epochs(cfg: dict) -> None:
    """Fill change.from/to left null: t0 = the first inventory-year epoch (else the first), t1 = the last other one."""
    change, names = cfg.setdefault("change", {}), list(cfg["epochs"])
    if change.get("from") is None:
        inv = [n for n in names if cfg["epochs"][n].get("inventory_year")]
        change["from"] = (inv or names)[0]
    if change.get("to") is None:
        others = [n for n in names if n != change["from"]]
        change["to"] = others[-1] if others else change["from"]


def _describe(schema: dict, key: str) -> str:
    """The schema's description of a dotted key (first sentence), for error messages."""
    node = schema
    for part in key.split("."):
        node = node.get("properties", {}).get(part, {})
    text = " ".join(str(node.get("description", "see workflow/schemas/config.schema.yaml")).split())
    return text.split(". ")[0].rstrip(".")


def model_channels(cfg: dict) -> list[str]:
    """The default channels of every model variant (``model.channels``, null = the 16 DL4GAM channels)."""
    from glaciermap.data.channels import CHANNEL_SETS

    return list(cfg.get("model", {}).get("channels") or CHANNEL_SETS["dl4gam"])


#: keys of `train` that change no result (how jobs are packed, how often they checkpoint, what they keep): kept out of a model's
#: settings, so switching them re-runs nothing
RUN_ONLY_TRAIN_KEYS = ("pack_members", "checkpoint_every_s", "keep_last_checkpoint")


def model_registry(cfg: dict) -> dict[str, dict]:
    """Every model variant by name: the `model` and `train` sections overridden by the entry in `models`.

    Each value holds the network (arch, encoder, encoder_weights), the training settings (members, epochs,
    patch_size, strides, lr, ...) and ``channels``, the resolved list of channel names.
    """
    from glaciermap.data.channels import CHANNEL_SETS

    base = {k: v for k, v in cfg.get("model", {}).items() if k != "channels"}
    base.update({k: v for k, v in cfg.get("train", {}).items() if k not in RUN_ONLY_TRAIN_KEYS})
    out = {}
    for name, entry in (cfg.get("models") or {}).items():
        entry = dict(entry or {})
        chans = entry.pop("channels", None)
        drop = entry.pop("drop_channels", [])
        if isinstance(chans, str):
            chans = CHANNEL_SETS.get(chans, [chans])
        channels = [c for c in (list(chans) if chans else model_channels(cfg)) if c not in drop]
        labels = entry.get("labels", base.get("labels", GLACIER_LABELS))
        # label_rules: the label set's definition (None for the binary target), so that the model's settings (the
        # training jobs' param) change with it; its label rasters are ancient() training inputs
        out[name] = {**base, **entry, "channels": channels, "classes": model_classes(cfg, labels),
                     "label_rules": (cfg.get("labels") or {}).get(labels) if labels != GLACIER_LABELS else None}
    return out


#: The built-in target of a binary model: the inventory outlines (one sigmoid output).
GLACIER_LABELS = "glacier"


def model_classes(cfg: dict, labels: str | None) -> list[str]:
    """Class names a model predicts: ``["glacier"]`` for the binary target, else the label set's classes."""
    if labels in (None, GLACIER_LABELS):
        return [GLACIER_LABELS]
    spec = (cfg.get("labels") or {}).get(labels)
    return [c["name"] for c in spec["classes"]] if spec else []


def is_binary(model: dict) -> bool:
    """A model of the binary glacier target (one output), as opposed to a K-class model."""
    return len(model["classes"]) == 1


def used_label_sets(cfg: dict) -> list[str]:
    """Label sets some model trains on (first-use order)."""
    out = []
    for m in model_registry(cfg).values():
        if m.get("labels", GLACIER_LABELS) != GLACIER_LABELS and m["labels"] not in out:
            out.append(m["labels"])
    return out


def label_set_channels(cfg: dict) -> list[str]:
    """Channels the used label sets threshold (the cubes must hold them as layers)."""
    from glaciermap.segmentation.labels import label_channels

    seen = []
    for name in used_label_sets(cfg):
        if name in (cfg.get("labels") or {}):   # an unknown set is reported by the model checks
            seen += [c for c in label_channels(cfg["labels"][name]) if c not in seen]
    return seen


def all_model_channels(cfg: dict) -> list[str]:
    """Every channel some model variant uses, in first-use order (the layers the cubes must hold)."""
    seen = []
    for m in model_registry(cfg).values():
        seen += [c for c in m["channels"] if c not in seen]
    return seen


def cube_plan(cfg: dict) -> tuple[list[str], dict]:
    """What every cube holds and reads, as the ``cube`` rule passes it: the layers (every model's channels, the
    channels the label sets and the debris thresholds use, and the bands the baseline, comparison and figures read,
    ``glaciermap.data.channels.READER_LAYERS``; nothing else is computed) and, per raster channel role those layers
    need, its registry source ``{role: {"name", "config"}}`` (from ``channel_sources``)."""
    from glaciermap.data.channels import RASTER_SOURCES, READER_LAYERS, cube_layers
    from glaciermap.debris.thresholds import threshold_channels

    extra = list(READER_LAYERS) + label_set_channels(cfg)
    if cfg["debris"]["label_set"]:
        extra += threshold_channels(cfg["debris"]["thresholds"])
    layers, roles = cube_layers(all_model_channels(cfg), extra=list(dict.fromkeys(extra)))
    sources = source_configs(cfg)
    channel_sources = {role: {"name": cfg["channel_sources"][role], "config": sources[cfg["channel_sources"][role]]}
                       for role in RASTER_SOURCES if role in roles}
    return layers, channel_sources


def raster_path(cfg: dict, kind: str, epoch: str | None = None) -> str | None:
    """Path or URL of the DEM (``kind="dem"``) or of an epoch's dh/dt map (``"dhdt"``), resolved from the STAC
    source where the config names a catalog item; None when none is configured (allowed only when no model channel
    needs it: checked by :func:`validate_config`)."""
    from glaciermap.data.stac import resolve_raster

    if kind == "dem":
        spec = cfg.get("dem")
    else:
        period = cfg["epochs"][epoch].get("dhdt")
        spec = cfg["dhdt"][period] if period else None
    return resolve_raster(spec, cfg["stac"]["source"]) if spec else None


def stac_source_config(cfg: dict) -> dict:
    """The Sentinel-2 L2A source that the ``stac`` section describes (the source ``s2`` unless declared)."""
    scfg = cfg["stac"]
    offset = scfg.get("reflectance_offset", "auto")
    return {
        "kind": "sentinel2_l2a",
        "stac": {"source": scfg["source"], "collection": scfg["collection"],
                 "max_cloud_cover": scfg["max_scene_cloud_cover"],
                 "missing_cloud_cover": scfg.get("missing_cloud_cover", "keep")},
        "assets": dict(scfg["bands"]),
        "offset": "auto" if offset == "auto" else float(offset) * 1e-4,  # the stac section gives it in DN
        "mask": {"asset": scfg["scl_asset"], "fill": list(scfg["nodata_classes"]),
                 "cloud": list(scfg["cloud_classes"]), "shadow": list(scfg["shadow_classes"])},
    }


def source_configs(cfg: dict) -> dict:
    """Every source by name: ``sources`` plus ``s2`` from the ``stac`` section when not declared there."""
    out = dict(cfg.get("sources") or {})
    if "s2" not in out and cfg.get("stac", {}).get("source"):
        out["s2"] = stac_source_config(cfg)
    return out


def _check_semantics(cfg: dict) -> None:
    problems = []
    from glaciermap.data.sources import check_sources

    sources = source_configs(cfg)
    problems += check_sources({"sources": sources})
    if cfg.get("imagery") not in sources:
        problems.append(f"imagery: '{cfg.get('imagery')}' is not a source (sources: {', '.join(sources) or 'none'})")
    from glaciermap.data.channels import RASTER_SOURCES, ChannelError, cube_layers, get_channel

    problems += _check_models(cfg)
    problems += _check_labels(cfg)
    problems += _check_facies(cfg, sources)
    problems += _check_outline_issues(cfg)
    problems += _check_timeseries(cfg, sources)
    channels = all_model_channels(cfg)
    channels += [c for c in label_set_channels(cfg) if c not in channels]
    deb = cfg.get("debris") or {}
    if deb.get("label_set"):   # the threshold baseline's layers are cube layers too (common.smk CUBE_LAYERS)
        from glaciermap.debris.thresholds import threshold_channels

        try:
            channels += [c for c in threshold_channels(deb.get("thresholds")) if c not in channels]
        except (KeyError, TypeError):
            pass   # a malformed rule list is reported by _check_models (debris.thresholds)
    try:
        layers, needs = cube_layers(channels)
    except ChannelError as e:
        problems.append(f"models: {e}")
        layers, needs = [], []
    uses_dhdt = "dhdt" in needs
    for name, ep in cfg["epochs"].items():
        if not _safe_name(name):
            problems.append(f"epochs.{name}: epoch names may only use letters, digits, '.', '_' and '-'")
        n = 5 if ep.get("inventory_year") else 10
        for k in ("start", "end"):
            if len(str(ep[k])) != n:
                fmt = "MM-DD" if n == 5 else "YYYY-MM-DD"
                problems.append(f"epochs.{name}.{k}: '{ep[k]}' must be {fmt} (inventory_year epochs give MM-DD)")
        if ep.get("dhdt") and ep["dhdt"] not in cfg["dhdt"]:
            known = ", ".join(cfg["dhdt"]) or "none is configured"
            problems.append(f"epochs.{name}.dhdt: '{ep['dhdt']}' is not a key of dhdt ({known})")
        elif uses_dhdt and not ep.get("dhdt"):
            problems.append(f"epochs.{name}.dhdt: missing, but a model's channels (models, model.channels) include dhdt; "
                            "name a dh/dt map of `dhdt` for this epoch or leave dhdt out of every model's channels")
    for role in sorted(set(RASTER_SOURCES) & set(needs)):
        users = [c for c in layers if role in get_channel(c).sources]
        name = (cfg.get("channel_sources") or {}).get(role)
        if not name:
            problems.append(f"channel_sources.{role}: missing, but the models' channels (models, model.channels) include "
                            f"{', '.join(users)}; name a raster or raster_per_year entry of `sources`"
                            + (" (or a landsat_c2l2 one: its thermal band near each image's date)"
                               if role == "temperature" else ""))
        elif name not in sources:
            problems.append(f"channel_sources.{role}: '{name}' is not a source ({', '.join(sources) or 'none'})")
        elif sources[name].get("kind") not in ("raster", "raster_per_year"):
            problems += _check_scene_channel_source(role, name, sources[name])
    terrain = [c for c in layers if "dem" in get_channel(c).sources]
    if terrain and not cfg.get("dem"):
        problems.append(f"dem: missing, but the models' channels (models, model.channels) include {', '.join(terrain)}; "
                        "give dem: {path: ...} (or stac_item + asset) or leave the terrain channels out")
    for key in ("from", "to"):
        name = cfg.get("change", {}).get(key)
        if name is not None and name not in cfg["epochs"]:
            problems.append(f"change.{key}: '{name}' is not an epoch ({', '.join(cfg['epochs'])})")
    if cfg["change"]["from"] == cfg["change"]["to"] and cfg["change"]["from"] in cfg["epochs"] and len(cfg["epochs"]) > 1:
        problems.append(f"change.to: '{cfg['change']['to']}' is the same epoch as change.from; with several epochs "
                        "give two different ones (a one-epoch region, mapping and areas without change, has a single "
                        "entry in `epochs`)")
    tp, gp = cfg.get("train", {}).get("patch_size"), cfg["grid"]["patch_size"]
    if tp is not None and tp > gp:
        problems.append(f"train.patch_size: {tp} is larger than grid.patch_size {gp} (the cube margin is grid.patch_size/2)")
    rasters = ([("dem", cfg["dem"])] if cfg.get("dem") else []) + [(f"dhdt.{n}", sp) for n, sp in cfg["dhdt"].items()]
    for key, spec in rasters:
        problems += _check_raster(key, spec)
        if spec.get("stac_item") and not cfg["stac"].get("source"):
            problems.append(f"{key}.stac_item: needs stac.source (the catalog holding item '{spec['stac_item']}'); "
                            "or give the raster by path")
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))


def _check_scene_channel_source(role: str, name: str, scfg: dict) -> list[str]:
    """A scene source (STAC items) named in channel_sources: only for the roles a scene source can feed
    (``SCENE_CHANNEL_BANDS``: temperature from the thermal band, as a near-date composite), with that band and a
    ``stac.source`` to search. Pure: builds the source, searches nothing."""
    from glaciermap.data.sources import SCENE_CHANNEL_BANDS, SourceConfigError, build_source

    kind = scfg.get("kind")
    band = SCENE_CHANNEL_BANDS.get(role)
    try:
        src = build_source(name, scfg)
    except SourceConfigError:
        return []  # check_sources names the problem
    if band is None or not src.item_based:
        scene = f", or a scene source with band '{SCENE_CHANNEL_BANDS[role]}' (landsat_c2l2)" if band else ""
        return [f"channel_sources.{role}: source '{name}' is of kind {kind}; a raster or raster_per_year source"
                f"{scene} is needed"]
    if band not in src.provides:
        return [f"channel_sources.{role}: source '{name}' is of kind {kind}, which has no band '{band}'; a raster or "
                f"raster_per_year source, or a scene source with band '{band}' (landsat_c2l2), is needed"]
    if not src.stac_source:
        return [f"channel_sources.{role}: sources.{name}.stac.source is missing: the {role} channel searches that "
                "source's scenes near each image's date (give a STAC API URL or a catalog.json)"]
    return []


def _check_models(cfg: dict) -> list[str]:
    """Model entries: known channel sets, drops that exist, area_change lists naming models."""
    from glaciermap.data.channels import CHANNEL_SETS, ChannelError, get_channel

    problems = []
    models = cfg.get("models") or {}
    for name, entry in models.items():
        entry = entry or {}
        chans = entry.get("channels")
        if isinstance(chans, str) and chans not in CHANNEL_SETS:
            problems.append(f"models.{name}.channels: '{chans}' is not a channel set ({', '.join(CHANNEL_SETS)}); "
                            "give a list of channel names or a set name")
            continue
        base = (CHANNEL_SETS[chans] if isinstance(chans, str) else chans) or model_channels(cfg)
        for c in base:
            try:
                get_channel(c)
            except ChannelError as e:
                problems.append(f"models.{name}.channels: {e}")
        for c in entry.get("drop_channels", []):
            if c not in base:
                problems.append(f"models.{name}.drop_channels: '{c}' is not among its channels "
                                f"({', '.join(base)}); nothing to drop")
        if len([c for c in base if c not in entry.get("drop_channels", [])]) == 0:
            problems.append(f"models.{name}: no channel left")
        p = entry.get("patch_size")
        if p is not None and p > cfg["grid"]["patch_size"]:
            problems.append(f"models.{name}.patch_size: {p} is larger than grid.patch_size {cfg['grid']['patch_size']} "
                            "(the cube margin is grid.patch_size/2)")
        labels = entry.get("labels", cfg.get("model", {}).get("labels", GLACIER_LABELS))
        if labels != GLACIER_LABELS and labels not in (cfg.get("labels") or {}):
            problems.append(f"models.{name}.labels: '{labels}' is neither `glacier` (the binary target) nor a label set "
                            f"of `labels` ({', '.join(cfg.get('labels') or {}) or 'none is configured'})")
    for m in (cfg.get("importance") or {}).get("overrides") or {}:
        if m not in models:
            problems.append(f"importance.overrides.{m}: not an entry of `models` ({', '.join(models)})")
    for section in ("importance", "random_split", "debris"):
        for m in (cfg.get(section) or {}).get("models") or []:
            if m not in models:
                problems.append(f"{section}.models: '{m}' is not an entry of `models` ({', '.join(models)})")
    from glaciermap.data.channels import known_channels

    for g in (cfg.get("importance") or {}).get("groups") or {}:
        if g in known_channels():
            problems.append(f"importance.groups.{g}: a group may not be named like a channel")
    ac = cfg.get("area_change", {})
    registry = model_registry(cfg) if not problems else {}
    for key in ("models", "compare"):
        for m in ac.get(key) or []:
            if m not in models:
                problems.append(f"area_change.{key}: '{m}' is not an entry of `models` ({', '.join(models)})")
            elif m in registry and not is_binary(registry[m]):
                problems.append(f"area_change.{key}: '{m}' is a K-class model (labels: {registry[m]['labels']}); the "
                                "area change method needs a binary glacier model (labels: glacier)")
    for m, spec in registry.items():
        if spec.get("training_data") == "store" and not is_binary(spec):
            where = f"models.{m}.training_data" if "training_data" in (models[m] or {}) else "train.training_data"
            problems.append(f"{where}: 'store' holds binary targets only; '{m}' is a K-class model (labels: "
                            f"{spec['labels']}): use cubes")
    deb = cfg.get("debris") or {}
    for m in deb.get("models") or []:
        if m in registry:
            classes = registry[m]["classes"]
            if is_binary(registry[m]):
                problems.append(f"debris.models: '{m}' is a binary model; the debris method needs a K-class model "
                                "whose label set has the debris and clean-ice classes")
            for key in ("debris_class", "clean_class"):
                name = deb.get(key, {"debris_class": "debris", "clean_class": "clean_ice"}[key])
                if not is_binary(registry[m]) and name not in classes:
                    problems.append(f"debris.{key}: '{name}' is not a class of model '{m}' ({', '.join(classes)})")
    if deb.get("label_set"):
        for m in deb.get("models") or []:
            if m in registry and registry[m]["labels"] != deb["label_set"]:
                problems.append(f"debris.models: '{m}' learns label set '{registry[m]['labels']}', not "
                                f"debris.label_set '{deb['label_set']}' (the baseline is compared with it)")
        if deb["label_set"] not in (cfg.get("labels") or {}):
            problems.append(f"debris.label_set: '{deb['label_set']}' is not a label set of `labels`")
        else:
            from glaciermap.debris.thresholds import check_rules
            from glaciermap.segmentation.labels import labelset_classes

            try:
                check_rules(deb.get("thresholds"), labelset_classes(cfg["labels"][deb["label_set"]]))
            except ValueError as e:
                problems.append(f"debris.{e}" if str(e).startswith("thresholds") else f"debris.thresholds: {e}")
    return problems


def _check_labels(cfg: dict) -> list[str]:
    """Label sets: their rules (glaciermap.segmentation.labels) and the channels their thresholds read."""
    from glaciermap.data.channels import ChannelError, get_channel
    from glaciermap.segmentation.labels import check_labelset, label_channels

    problems = []
    for name, spec in (cfg.get("labels") or {}).items():
        if name == GLACIER_LABELS:
            problems.append(f"labels.{name}: the name is reserved for the built-in binary target")
            continue
        # map files are checked once the region's data exist (the inventory): `snakemake --lint` on a fresh clone
        problems += check_labelset(name, spec, check_files=Path(str((cfg.get("inventory") or {}).get("path", ""))).exists())
        for c in label_channels(spec):
            try:
                if not get_channel(c).stored:
                    problems.append(f"labels.{name}: channel {c} is fitted per fold, not a cube layer; a label rule "
                                    "can only threshold a stored layer")
            except ChannelError as e:
                problems.append(f"labels.{name}: {e}")
    return problems

SCENE_KINDS = ("landsat_c2l2", "sentinel2_l1c", "sentinel2_l2a")



def _check_timeseries(cfg: dict, sources: dict) -> list[str]:
    """The time series (timeseries.*): its sources and their bands, the years, the channels and the ensemble size."""
    ts = cfg.get("timeseries") or {}
    names = list(ts.get("sources") or [])
    if not names:
        return []
    problems = []
    from glaciermap.data.sources import SourceConfigError, build_source

    bands = list(ts.get("bands") or [])
    for name in names:
        if name not in sources:
            problems.append(f"timeseries.sources: '{name}' is not a source ({', '.join(sources) or 'none'})")
            continue
        kind = sources[name].get("kind")
        if kind not in SCENE_KINDS:
            problems.append(f"timeseries.sources: '{name}' is a {kind} source; the series needs scenes "
                            f"({', '.join(SCENE_KINDS)})")
            continue
        if sources[name].get("near_date"):
            problems.append(f"timeseries.sources: '{name}' has near_date (a composite for cube channels); declare a "
                            "plain entry of the same collection for the series")
            continue
        optional = set(ts.get("optional_bands") or [])
        try:
            build_source(name, sources[name]).require([b for b in bands if b not in optional], key="timeseries.bands")
        except (SourceConfigError, KeyError, ValueError) as e:
            problems.append(f"timeseries.bands: source '{name}' cannot give them: {e}")
    y0, y1 = ts.get("years", [1984, 2025])
    if y0 > y1:
        problems.append(f"timeseries.years: first year {y0} is after the last {y1}")
    model = ts.get("model") or {}
    from glaciermap.timeseries.train import INDICES

    known = set(bands) | {"dem"} | set(INDICES)
    bad = [c for c in model.get("channels", []) if c not in known]
    if bad:
        problems.append(f"timeseries.model.channels: {', '.join(bad)} are not bands of timeseries.bands, dem or an "
                        f"index ({', '.join(INDICES)})")
    for c in model.get("channels", []):
        if c in INDICES and any(b not in bands for b in INDICES[c]):
            problems.append(f"timeseries.model.channels: {c} needs the bands {', '.join(INDICES[c])} in timeseries.bands")
    if "dem" in model.get("channels", []) and not cfg.get("dem"):
        problems.append("dem: missing, but timeseries.model.channels has dem")
    if not (cfg.get("split") or {}).get("n_folds"):
        problems.append("timeseries: the series is trained on the shared geographic split (split.n_folds)")
    return problems

def _check_facies(cfg: dict, sources: dict) -> list[str]:
    """The facies method (facies.*): its source, class lists, patch size, DEM and SMB table."""
    fa = cfg.get("facies") or {}
    if not fa.get("points"):
        return []
    problems = []
    src = fa["source"]
    if src not in sources:
        problems.append(f"facies.source: '{src}' is not a source ({', '.join(sources) or 'none'})")
    elif sources[src].get("kind") not in SCENE_KINDS:
        problems.append(f"facies.source: '{src}' is a {sources[src].get('kind')} source; the points are labelled on "
                        f"scenes: use a {' / '.join(SCENE_KINDS)} source")
    elif sources[src].get("near_date"):
        problems.append(f"facies.source: '{src}' has near_date (a composite for cube channels); declare a plain "
                        "entry of the same collection for the facies scenes")
    classes = list(fa["classes"])
    if len(set(classes)) != len(classes):
        problems.append(f"facies.classes: duplicate names in {classes}")
    for key in ("prunable", "surface_classes"):
        bad = [c for c in fa[key] if c not in classes]
        if bad:
            problems.append(f"facies.{key}: {', '.join(bad)} not in facies.classes ({', '.join(classes)})")
    if fa["snow_class"] not in classes:
        problems.append(f"facies.snow_class: '{fa['snow_class']}' not in facies.classes ({', '.join(classes)})")
    if fa["patch_size"] % 2 != 1:
        problems.append(f"facies.patch_size: must be odd (a centre pixel), got {fa['patch_size']}")
    if fa["feature_set"] != "optical" and not cfg.get("dem"):
        problems.append(f"dem: missing, but facies.feature_set '{fa['feature_set']}' has terrain layers; give dem or "
                        "use feature_set optical")
    smb = fa.get("smb") or {}
    if smb.get("path") and not (fa.get("maps") or {}).get("years"):
        problems.append("facies.maps.years: empty, but facies.smb.path is set; the SMB regression needs the maps of "
                        "the SMB years")
    if (fa.get("maps") or {}).get("reference"):
        import datetime as _dt

        try:
            _dt.date(2001, *(int(v) for v in fa["maps"]["reference"].split("-")))
        except ValueError:
            problems.append(f"facies.maps.reference: '{fa['maps']['reference']}' is not a day of the year (MM-DD)")
    return problems


def _check_outline_issues(cfg: dict) -> list[str]:
    problems = []
    models = model_registry(cfg)
    for m in (cfg.get("outline_issues") or {}).get("models") or []:
        if m not in models:
            problems.append(f"outline_issues.models: '{m}' is not an entry of `models` ({', '.join(models)})")
        elif not is_binary(models[m]):
            problems.append(f"outline_issues.models: '{m}' is a K-class model; the outlines are scored with a binary "
                            "(glacier / not glacier) model")
    return problems


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
