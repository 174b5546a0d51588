"""File lists of the folds (rule ``fold_list``): one path a line, what fold- and region-level jobs read.

A job that reads the cubes (or label rasters) of a fold's glaciers takes the fold's list as its one input instead
of one input per glacier (``normalise``, ``train``, ``infer``, ``calibrate``, ``confusion``, ``importance``,
``outline_issues``). Snakemake keeps an object per input of every job, so at region scale this is what keeps the
DAG's memory and build time down (docs/scale.md, "Planning time").

Two kinds of list keep today's rerun rules:

- ``<role>.content.txt``: its inputs are the files themselves, so a re-made file (a new scene) re-makes the list,
  and the jobs that read it re-run, as they did when they took the files directly (``infer``, ``calibrate``, ...).
- ``<role>.membership.txt``: its inputs are ``ancient()``, so only a change of the fold's glaciers with that role
  (or a missing list) re-makes it: the training jobs (``normalise``, ``train``) do not re-run for a new scene, as
  before (README "Incremental runs"; ``--forcerun normalise train`` retrains).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from glaciermap.io import write_text_atomic

log = logging.getLogger("glaciermap")

#: first line of a file list: what it is, for a user who opens one
HEADER = "# glaciermap file list: one path a line, relative to the workflow's directory"


def write_fold_list(paths, out_path: str | os.PathLike) -> None:
    """Write the file list ``out_path``: the header line, then one path a line, in the given order."""
    paths = [str(p) for p in paths]
    bad = [p for p in paths if not p.strip() or "\n" in p or p.startswith("#")]
    if bad:
        raise ValueError(f"file list {out_path}: {len(bad)} path(s) cannot be listed one a line: {bad[:3]}")
    write_text_atomic(out_path, "\n".join([HEADER, *paths]) + "\n")
    log.info("file list %s: %d path(s)", out_path, len(paths))


def read_fold_lists(list_paths) -> list[str]:
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
                             "re-make it with `snakemake --forcerun fold_list`")
        out.extend(line for line in lines[1:] if line.strip())
    return out
