"""The registry of source kinds: kind name (as written in ``sources.<name>.kind``) -> Source class.

Adding a sensor = one module under ``glaciermap/sources/`` with a :class:`~glaciermap.data.sources.base.Source`
subclass, plus one entry here (or a call to :func:`register_kind` from outside the package).
"""

from __future__ import annotations

import functools
import json

from glaciermap.data.sources.base import Source, SourceConfigError
from glaciermap.data.sources.landsat import LandsatC2L2
from glaciermap.data.sources.raster import PerYearRasterSource, RasterSource
from .sentinel1 import Sentinel1
from .sentinel2 import Sentinel2L1C, Sentinel2L2A

KINDS: dict[str, type[Source]] = {
    "sentinel2_l2a": Sentinel2L2A,
    "sentinel2_l1c": Sentinel2L1C,
    "landsat_c2l2": LandsatC2L2,
    "sentinel1": Sentinel1,
    "raster": RasterSource,
    "raster_per_year": PerYearRasterSource,
}


def register_kind(kind: str, cls: type[Source]) -> None:
    """Add a source kind (a Source subclass whose ``kind`` is ``kind``); an existing kind is not replaced."""
    if not (isinstance(cls, type) and issubclass(cls, Source)):
        raise TypeError(f"{cls!r} is not a glaciermap.data.sources.Source subclass")
    if kind in KINDS and KINDS[kind] is not cls:
        raise ValueError(f"source kind '{kind}' is already registered ({KINDS[kind].__name__})")
    if cls.kind != kind:
        raise ValueError(f"{cls.__name__}.kind is '{cls.kind}', not '{kind}'")
    KINDS[kind] = cls


def _sources_mapping(config: dict) -> dict:
    if not isinstance(config, dict):
        raise SourceConfigError("?", None, f"the sources config must be a mapping, got {type(config).__name__}")
    if "sources" in config and isinstance(config["sources"], dict):
        return config["sources"]
    return config


def build_source(name: str, cfg: dict) -> Source:
    """One Source from its config mapping (needs ``kind``)."""
    if not isinstance(cfg, dict):
        raise SourceConfigError(str(name), None, f"must be a mapping with a kind, got {cfg!r}")
    kind = cfg.get("kind")
    if kind is None:
        raise SourceConfigError(str(name), "kind", f"missing; one of {', '.join(KINDS)}")
    if kind not in KINDS:
        raise SourceConfigError(str(name), "kind", f"unknown kind '{kind}'; one of {', '.join(KINDS)}")
    return KINDS[kind](name, cfg)


def cached_source(name: str, cfg: dict) -> Source:
    """:func:`build_source`, made once per process for each name and config: a job or the DAG build that asks for
    the same source per glacier shares one object (and a static catalog's index of item footprints)."""
    return _cached_source(str(name), json.dumps(cfg, sort_keys=True, default=str))


@functools.lru_cache(maxsize=32)
def _cached_source(name: str, cfg_json: str) -> Source:
    return build_source(name, json.loads(cfg_json))


def warm_catalogs(sources: dict) -> list[str]:
    """Read the local static STAC catalogs of ``sources`` (``{name: config}``) into this process's cache, afresh
    where a catalog file changed (:func:`glaciermap.data.stac.warm_static`); the catalogs read. The job worker
    calls it before it forks a job's child (the modules' ``worker_warm`` hooks). Sources that are not valid, or a
    catalog that cannot be read, raise: the worker logs that and the job itself reports it."""
    from glaciermap.data import stac

    done = []
    for name, cfg in sources.items():
        src = cached_source(name, cfg)
        where = getattr(src, "stac_source", None)
        if where and str(where) not in done and stac.warm_static(str(where)):
            done.append(str(where))
    return done


def build_sources(config: dict) -> dict[str, Source]:
    """``{name: Source}`` from ``{sources: {name: {kind: ..., ...}}}`` or from the ``sources`` mapping itself.

    Pure (reads no file): raises :class:`SourceConfigError` (``sources.<name>.<key>: problem``) for the first
    unknown kind, unknown key, undeclared band, bad value. :func:`check_sources` collects every problem.
    """
    return {str(name): build_source(name, cfg) for name, cfg in _sources_mapping(config).items()}


def check_sources(config: dict) -> list[str]:
    """Every source config problem as ``sources.<name>.<key>: problem`` strings (empty list: all fine)."""
    try:
        mapping = _sources_mapping(config)
    except SourceConfigError as e:
        return [str(e)]
    problems = []
    for name, cfg in mapping.items():
        try:
            build_source(name, cfg)
        except SourceConfigError as e:
            problems.append(str(e))
    return problems
