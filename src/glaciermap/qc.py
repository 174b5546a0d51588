"""QC: one table of every skipped glacier and epoch with its step and reason, and the chosen images."""

from __future__ import annotations

import json

import pandas as pd

from .io import STATUS_SKIPPED, read_status, write_csv_atomic, write_json_atomic


def collect_qc(manifest_csv: str, cubes: dict, selections: dict, out_skipped: str, out_selected: str, out_summary: str) -> dict:
    """Aggregate statuses.

    ``cubes`` and ``selections`` map (glacier_id, epoch) -> path; the glacier list comes from the manifest,
    never from globbing, so a stray file is never counted and a missing one is an error.
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
    write_csv_atomic(out_skipped, skipped)
    write_csv_atomic(out_selected, selected)
    n_mapped = int((manifest["qc_status"] == "ok").sum())
    skipped_glaciers = set(skipped["glacier_id"])
    summary = {
        "n_glaciers_inventory": int(len(manifest)),
        "n_glaciers_small": int((manifest["qc_status"] == "small").sum()),
        "n_glaciers_to_map": n_mapped,
        "n_glaciers_skipped": len(skipped_glaciers),
        "n_cubes_ok": int((selected["status"] == "ok").sum()) if len(selected) else 0,
        "skipped_by_step": skipped.groupby("step").size().to_dict(),
    }
    write_json_atomic(out_summary, summary)
    return summary
