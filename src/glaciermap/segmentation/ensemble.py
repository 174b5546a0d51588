"""Rule ``ensemble`` (workflow/rules/segmentation/train.smk): the member list of one model and fold, read by inference.

Rule ``train_fold`` (train.pack_members: true) writes the same file with :func:`write_ensemble` instead.
"""

from __future__ import annotations

from pathlib import Path

from glaciermap.io import write_json_atomic


def write_ensemble(done_jsons, out_json) -> dict:
    """The ensemble of one model and fold: its members' done.json files (the list inference reads)."""
    done = [Path(p) for p in done_jsons]
    missing = [str(p) for p in done if not p.exists()]
    if missing:
        raise FileNotFoundError(f"ensemble {out_json}: member(s) not trained: {', '.join(missing)}")
    out = {"members": [str(p) for p in done], "n_members": len(done)}
    write_json_atomic(out_json, out)
    return out
