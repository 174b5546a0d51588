"""Rule ``normalise`` (workflow/rules/segmentation/patches.smk): the normalisation statistics of one model and fold.

Only file I/O: the method (per channel mean/std over the fold's training cubes) is
:func:`glaciermap.segmentation.patches.fit_fold_normalisation`.
"""

from __future__ import annotations

from pathlib import Path


def run_normalisation(cube_paths, split_csv, fold: int, channels, out_json) -> None:
    from glaciermap.segmentation.patches import fit_fold_normalisation, save_normalisation
    from glaciermap.segmentation.split import read_split

    by_glacier = {Path(p).parent.name: str(p) for p in cube_paths}
    save_normalisation(fit_fold_normalisation(by_glacier, read_split(split_csv), fold, channels), out_json)
