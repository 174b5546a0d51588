import pytest
import yaml

from glaciermap.config import ConfigError, load_config, validate_config


def test_repo_config_is_valid_and_defaults_filled():
    cfg = load_config("config.yaml")
    assert cfg["selection"]["max_cloud_fraction"] == 0.3
    assert cfg["grid"]["patch_size"] == 256
    assert set(cfg["epochs"]) == {"inventory", "2023"}


def test_every_schema_property_has_description_and_default():
    from glaciermap.config import load_schema

    schema = load_schema()

    def walk(node, path):
        for key, sub in node.get("properties", {}).items():
            assert "description" in sub, f"{path}{key} has no description"
            if key not in node.get("required", []):
                assert "default" in sub or path.startswith("$defs") or "epochs" in path, f"{path}{key} has no default"
            walk(sub, f"{path}{key}.")

    walk(schema, "")


def test_unknown_key_is_named():
    with pytest.raises(ConfigError, match=r"selection: .*'max_clouds' was unexpected"):
        validate_config({"selection": {"max_clouds": 0.2}})


def test_wrong_type_is_named():
    with pytest.raises(ConfigError, match=r"grid.resolution: 'ten' is not of type 'number'"):
        validate_config({"grid": {"resolution": "ten"}})


def test_numeric_epoch_names_and_bad_dhdt_reference(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump({"epochs": {2024: {"start": "2024-08-01", "end": "2024-10-15", "dhdt": "nope"}}}))
    with pytest.raises(ConfigError, match=r"epochs.2024.dhdt: 'nope' is not a key of dhdt"):
        load_config(p)


def test_raster_needs_path_or_item():
    with pytest.raises(ConfigError, match="dem: needs path, or stac_item and asset"):
        validate_config({"dem": {"asset": "dem"}})


def test_snakemake_rejects_bad_config_before_any_job(tmp_path):
    import subprocess
    import sys

    bad = tmp_path / "bad.yaml"
    bad.write_text("selection: {max_cloud_fraction: lots}\n")
    r = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--configfile", str(bad), "--cores", "1"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode != 0
    assert "selection.max_cloud_fraction: 'lots' is not of type 'number'" in r.stdout + r.stderr


def test_worked_example_config_is_valid():
    cfg = load_config("docs/examples/oetztal.yaml")
    assert cfg["stac"]["source"].startswith("https://")
    assert cfg["stac"]["bands"]["B11"] == "swir16" and cfg["stac"]["scl_asset"] == "scl"
    assert set(cfg["dhdt"]) == {e["dhdt"] for e in cfg["epochs"].values()}
