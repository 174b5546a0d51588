"""QC: one table of every skipped glacier and epoch with its step and reason, the chosen images, and every
candidate scene the acquisition dropped (unreadable file, missing asset) with its reason.

A region where every glacier to map was skipped stops here with :class:`AllSkippedError` (the common
step and reasons named), instead of "completing" with nothing mapped.
"""

from __future__ import annotations

import json
import logging

import pandas as pd

from glaciermap.io import STATUS_SKIPPED, read_status, write_csv_atomic, write_json_atomic

log = logging.getLogger("glaciermap.data.qc")

DROPPED_COLUMNS = ["glacier_id", "epoch", "item_id", "file", "reason"]


class AllSkippedError(RuntimeError):
    """Every glacier to map was skipped: the region produced nothing, which is a configuration or input error."""


def dropped_candidates(scenes: dict) -> pd.DataFrame:
    """Candidates the acquisition dropped, from each scenes file's ``dropped_items`` attribute (one row each)."""
    from glaciermap.data.netcdf import read_attrs

    rows = []
    for (gid, epoch), path in sorted(scenes.items()):
        attrs = read_attrs(path)
        if attrs.get("status") == STATUS_SKIPPED:
            continue
        for d in json.loads(attrs.get("dropped_items") or "[]"):
            rows.append({"glacier_id": gid, "epoch": epoch, "item_id": d.get("item_id", ""),
                         "file": d.get("file", ""), "reason": d.get("reason", "")})
    return pd.DataFrame(rows, columns=DROPPED_COLUMNS)


def _all_skipped_message(skipped: pd.DataFrame, n_mapped: int) -> str:
    per_glacier = skipped.drop_duplicates("glacier_id")
    steps = per_glacier["step"].value_counts()
    reasons = per_glacier["reason"].value_counts()
    lines = [f"all {n_mapped} glacier(s) to map were skipped; nothing can be mapped. By step: "
             + ", ".join(f"{s} {n}" for s, n in steps.items()) + ". Most common reasons:"]
    lines += [f"  {n} x {r}" for r, n in reasons.head(3).items()]
    lines.append("Each glacier's reason is in its log under logs/<step>/; fix the input or configuration named there "
                 "(a sensor without a cloud mask, a wrong asset key or band name, scenes outside the glaciers, ...).")
    return "\n".join(lines)


def collect_qc(manifest_csv: str, cubes: dict, selections: dict, out_skipped: str, out_selected: str, out_summary: str,
               scenes: dict | None = None, out_dropped: str | None = None) -> dict:
    """Aggregate statuses.

    ``cubes``, ``selections`` and ``scenes`` map (glacier_id, epoch) -> path; the glacier list comes from the
    manifest, never from globbing, so a stray file is never counted and a missing one is an error.
    Raises :class:`AllSkippedError` when every glacier to map was skipped (no table is written).
    """
    manifest = pd.read_csv(manifest_csv, dtype={"glac_id": str})
    rows = []
    for _, g in manifest[manifest["qc_status"] == STATUS_SKIPPED].iterrows():
        rows.append({"glacier_id": g["glac_id"], "epoch": "*", "step": "inventory", "reason": g["qc_reason"]})
    chosen = []
    for (gid, epoch), path in sorted(cubes.items()):
        st = read_status(path)
        if st["status"] == STATUS_SKIPPED:
            rows.append({"glacier_id": gid, "epoch": epoch, "step": st["skipped_at_step"], "reason": st["reason"]})
        sel = pd.read_csv(selections[(gid, epoch)], dtype={"glacier_id": str, "item_id": str})
        win = sel[sel["chosen"].astype(bool)]
        chosen.append({"glacier_id": gid, "epoch": epoch, "status": st["status"],
                       "item_id": win["item_id"].iat[0] if len(win) else "",
                       "datetime": win["datetime"].iat[0] if len(win) else "",
                       "cloud_fraction": win["cloud_fraction"].iat[0] if len(win) else float("nan"),
                       "ndsi": win["ndsi"].iat[0] if len(win) else float("nan"),
                       "n_candidates": int(sel["item_id"].notna().sum()),
                       "n_passing": int(sel["passes"].astype(bool).sum())})
    skipped = pd.DataFrame(rows, columns=["glacier_id", "epoch", "step", "reason"])
    selected = pd.DataFrame(chosen)
    n_mapped = int((manifest["qc_status"] == "ok").sum())
    skipped_glaciers = set(skipped["glacier_id"])
    mapped_ids = set(manifest.loc[manifest["qc_status"] == "ok", "glac_id"])
    if mapped_ids and mapped_ids <= skipped_glaciers:
        message = _all_skipped_message(skipped[skipped["glacier_id"].isin(mapped_ids)], n_mapped)
        log.error("%s", message)  # in the job's log too, not only in the traceback
        raise AllSkippedError(message)
    dropped = dropped_candidates(scenes or {})
    write_csv_atomic(out_skipped, skipped)
    write_csv_atomic(out_selected, selected)
    if out_dropped:
        write_csv_atomic(out_dropped, dropped)
    summary = {
        "n_glaciers_inventory": int(len(manifest)),
        "n_glaciers_small": int((manifest["qc_status"] == "small").sum()),
        "n_glaciers_to_map": n_mapped,
        "n_glaciers_skipped": len(skipped_glaciers),
        "n_cubes_ok": int((selected["status"] == "ok").sum()) if len(selected) else 0,
        "skipped_by_step": skipped.groupby("step").size().to_dict(),
        "n_candidates_dropped": int(len(dropped)),
        "dropped_candidates": dropped[["glacier_id", "epoch", "item_id", "reason"]].to_dict("records"),
    }
    write_json_atomic(out_summary, summary)
    return summary
