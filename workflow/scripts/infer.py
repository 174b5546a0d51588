import json
from pathlib import Path

from glaciermap.io import setup_logging
from glaciermap.infer import run_infer

setup_logging(snakemake.log[0])
i, out = snakemake.input, Path(snakemake.output[0])
members = json.loads(Path(i.ensemble).read_text())["members"]
cubes = list(i.test) + list(i.get("val", []))
# <out>/<glacier>.nc for the test glaciers, <out>/val/<glacier>.nc for the validation glaciers (t0 only)
outs = [out / f"{Path(c).parent.name}.nc" for c in i.test] + [out / "val" / f"{Path(c).parent.name}.nc"
                                                              for c in i.get("val", [])]
for d in {p.parent for p in outs} | {out}:
    d.mkdir(parents=True, exist_ok=True)
run_infer(members, i.norm, cubes, outs, snakemake.params.settings, snakemake.params.patch_size, snakemake.threads)
