"""File lists (rule ``file_list``): one path a line, what the fold- and region-level jobs read.

A job that reads the cubes (or scenes, selection tables, label rasters) of many glaciers takes a list of them as
its input instead of one input per glacier: a fold's glaciers with one role (``normalise``, ``train``, ``infer``,
``calibrate``, ``confusion``, ``importance``, ``outline_issues``, ``cover``, ``thresholds``) or the region's
(``qc``, ``patches``, ``areas``, ``outlines``, ``baseline``, ``compare``, ``random_split``). Snakemake keeps an
object per input of every job, so at region scale this is what keeps the DAG's memory and build time down
(docs/scale.md, "Planning time").

A list is ``lists/<kind>/<epochs>/<group>_<role>.<track>.<digest>.txt`` (the rule and the naming: workflow/rules/
data/file_list.smk and common.smk); its digest names the paths it lists, so a list of other glaciers is another file.
Two tracks keep today's rerun rules:

- ``content``: its inputs are the files themselves, so a re-made file (a new scene) re-makes the list,
  and the jobs that read it re-run, as they did when they took the files directly (``infer``, ``calibrate``, ...).
- ``membership``: its inputs are ``ancient()``, so only a change of the glaciers it lists (or a missing
  list) re-makes it: the training jobs (``patches``, ``normalise``, ``train``, ``random_split``) do not re-run for a
  new scene, as before (README "Incremental runs"; ``--forcerun patches normalise train`` retrains).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from glaciermap.io import write_text_atomic

log = logging.getLogger("glaciermap")

#: first line of a file list: what it is, for a user who opens one
HEADER = "# glaciermap file list: one path a line, relative to the workflow's directory"


def write_file_list(paths, out_path: str | os.PathLike) -> None:
    """Write the file list ``out_path``: the header line, then one path a line, in the given order."""
    paths = [str(p) for p in paths]
    bad = [p for p in paths if not p.strip() or "\n" in p or p.startswith("#")]
    if bad:
        raise ValueError(f"file list {out_path}: {len(bad)} path(s) cannot be listed one a line: {bad[:3]}")
    write_text_atomic(out_path, "\n".join([HEADER, *paths]) + "\n")
    log.info("file list %s: %d path(s)", out_path, len(paths))


def read_file_lists(list_paths) -> list[str]:
    """The paths of one or more file lists, concatenated in order.

    A file that is not such a list (no header: a cube passed by mistake, a hand-edited list) is an error naming
    it; lists are written atomically, so a present one is complete.
    """
    if isinstance(list_paths, (str, os.PathLike)):
        list_paths = [list_paths]
    out: list[str] = []
    for lp in list_paths:
        try:
            lines = Path(lp).read_text().splitlines()
        except UnicodeDecodeError:
            lines = []
        if not lines or lines[0] != HEADER:
            raise ValueError(f"file list {lp}: its first line is not the glaciermap file-list header {HEADER!r}; "
                             "re-make it with `snakemake --forcerun file_list`")
        out.extend(line for line in lines[1:] if line.strip())
    return out
