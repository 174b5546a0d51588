"""Rule ``cube``: image selection and the feature cube of one glacier and epoch, in one job.

The two steps read the same acquisition file (``scenes/<glacier>/<epoch>.nc``) and the feature step needs the
selection's choice, so one process does both: :func:`glaciermap.data.select.select_image` writes
``selection/<glacier>/<epoch>.csv`` (every candidate ranked, the chosen one marked), then
:func:`glaciermap.data.features.write_cube` builds ``cubes/<glacier>/<epoch>.nc`` from it. Both files are
written atomically, so a job that fails between them leaves no cube; Snakemake removes the selection of a failed
job. One job instead of two per glacier and epoch saves an interpreter start, the imports and a Snakemake job
(docs/scale.md, per-glacier job overhead). Acquisition stays its own rule: it is the step that reads remote
imagery, and changing a selection or feature setting must not fetch the scenes again.
"""

from __future__ import annotations

from glaciermap.data.features import write_cube
from glaciermap.data.select import select_image


def cube(glacier_id: str, epoch: str, acquisition_nc, inventory_gpkg, selection_params: dict, dem_href, dhdt_href,
         feature_params: dict | None, out_selection_csv, out_cube_nc, layers=None, sources: dict | None = None) -> dict:
    """Select the image of one glacier and epoch, then build its cube; returns the cube's status record.

    A glacier without a usable scene gets a selection table saying why and a cube skip record naming the step
    (``select``); an input the feature step cannot use gets a cube skip record naming glacier and file.
    """
    select_image(glacier_id, epoch, acquisition_nc, inventory_gpkg, selection_params, out_selection_csv)
    return write_cube(acquisition_nc, out_selection_csv, inventory_gpkg, glacier_id, epoch, dem_href, dhdt_href,
                      feature_params, out_cube_nc, layers=layers, sources=sources)
