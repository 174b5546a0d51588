rule smb:
    """Ridge regression of annual surface mass balance on snow-cover ratio, normalised snowline and albedo of the scenes
    near the reference day: one model for all glaciers (cross-validated by glacier) and per glacier (leave one year out)."""
    input:
        stats=expand(f"{FR}/maps/{{year}}.csv", year=FACIES_YEARS),
        smb=FACIES["smb"]["path"] if FACIES_SMB else [],
    output:
        csv=f"{FR}/smb.csv",
        json=f"{FR}/smb.json",
    params:
        settings=canonical({**FACIES["smb"], "window_days": FACIES["maps"]["window_days"],
                            "reference": FACIES["maps"]["reference"]}),
    resources:
        mem_mb=region_resources("smb", "mem_mb"),
        runtime=region_resources("smb", "runtime"),
    log:
        f"{R}/logs/smb/smb.log",
    benchmark:
        f"{R}/benchmarks/smb/smb.tsv",
    conda:
        CONDA_ENV
    script:
        "../../scripts/facies/smb.py"
