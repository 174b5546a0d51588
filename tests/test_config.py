import pytest
import yaml

from glaciermap.config import ConfigError, load_config, validate_config

#: The keys a region must state itself (no default points at the demo's inputs).
MINIMAL = {"inventory": {"path": "my/glaciers.gpkg"}, "stac": {"source": "my/catalog.json"},
           "dem": {"path": "my/dem.tif"}, "dhdt": {"2015-2019": {"path": "my/dhdt.tif"}},
           "epochs": {"2023": {"start": "2023-08-01", "end": "2023-10-15", "dhdt": "2015-2019"},
                      "2024": {"start": "2024-08-01", "end": "2024-10-15", "dhdt": "2015-2019"}}}


def _with(**sections):
    import copy

    cfg = copy.deepcopy(MINIMAL)
    cfg.update(sections)
    return cfg


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
    p.write_text(yaml.safe_dump(_with(epochs={2024: {"start": "2024-08-01", "end": "2024-10-15", "dhdt": "nope"}})))
    with pytest.raises(ConfigError, match=r"epochs.2024.dhdt: 'nope' is not a key of dhdt"):
        load_config(p)


def test_raster_needs_path_or_item():
    with pytest.raises(ConfigError, match="dem: needs path, or stac_item and asset"):
        validate_config(_with(dem={"asset": "dem"}))


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


def test_a_region_config_states_its_inputs_and_never_gets_the_demos():
    with pytest.raises(ConfigError) as e:
        validate_config({"epochs": MINIMAL["epochs"]})
    msg = str(e.value)
    assert "inventory.path: required key missing" in msg
    assert "resources/demo" not in msg
    with pytest.raises(ConfigError, match=r"imagery: 's2' is not a source \(sources: none\)"):
        validate_config(_with(stac={}))
    cfg = validate_config(_with(dem=None, dhdt={}, model={"channels": ["B04", "B03", "B02", "B08"]},
                                models={"dl4gam": {}},
                                epochs={"2023": {"start": "2023-08-01", "end": "2023-10-15"},
                                        "2024": {"start": "2024-08-01", "end": "2024-10-15"}}))
    assert cfg["dem"] is None and cfg["dhdt"] == {} and cfg["epochs"]["2023"]["dhdt"] is None


def test_change_epochs_default_to_the_inventory_epoch_and_the_last_one():
    eps = {"a": {"start": "2019-08-01", "end": "2019-09-30", "dhdt": "2015-2019"},
           "inv": {"inventory_year": True, "start": "08-01", "end": "09-30", "dhdt": "2015-2019"},
           "b": {"start": "2024-08-01", "end": "2024-09-30", "dhdt": "2015-2019"}}
    cfg = validate_config(_with(epochs=eps))
    assert (cfg["change"]["from"], cfg["change"]["to"]) == ("inv", "b")
    # one epoch: a one-epoch region (mapping and areas without change), t0 = t1 = the epoch
    one = validate_config(_with(epochs={"2023": MINIMAL["epochs"]["2023"]}))
    assert (one["change"]["from"], one["change"]["to"]) == ("2023", "2023")
    with pytest.raises(ConfigError, match="change.to: 'inv' is the same epoch as change.from; with several epochs"):
        validate_config(_with(epochs=eps, change={"from": "inv", "to": "inv"}))


def test_optional_layers_are_required_exactly_when_a_channel_needs_them():
    no_dhdt = {"2023": {"start": "2023-08-01", "end": "2023-10-15", "dhdt": None},
               "2024": {"start": "2024-08-01", "end": "2024-10-15", "dhdt": None}}
    with pytest.raises(ConfigError, match=r"epochs.2023.dhdt: missing, but a model's channels .* include dhdt"):
        validate_config(_with(epochs=no_dhdt))
    with pytest.raises(ConfigError, match=r"dem: missing, but the models' channels .* include dem, slope"):
        validate_config(_with(dem=None))
    # the default models include the no-dh/dt ablation, which has nothing to drop without dhdt
    with pytest.raises(ConfigError, match=r"models.dl4gam_no_dhdt.drop_channels: 'dhdt' is not among its channels"):
        validate_config(_with(epochs=no_dhdt, model={"channels": ["B04", "dem"]}))
    ok = validate_config(_with(epochs=no_dhdt, model={"channels": ["B04", "dem"]}, models={"dl4gam": {}}))
    assert ok["epochs"]["2023"]["dhdt"] is None


def test_user_configfile_is_not_merged_with_the_demo_config(tmp_path):
    """`snakemake --configfile my.yaml` as a user types it: the demo's dh/dt, DEM and epochs must not leak in."""
    import subprocess
    import sys

    from conftest import REPO

    user = tmp_path / "my.yaml"
    user.write_text(yaml.safe_dump({"region": "mine", "inventory": {"path": str(tmp_path / "none.gpkg")},
                                    "stac": {"source": str(tmp_path / "catalog.json")},
                                    "dem": {"path": str(tmp_path / "dem.tif")},
                                    "epochs": {"2020": {"start": "2020-08-01", "end": "2020-09-30"},
                                               "2024": {"start": "2024-08-01", "end": "2024-09-30"}},
                                    "model": {"channels": ["B04", "B03", "dem"]},
                                    "models": {"dl4gam": {}}}))
    r = subprocess.run([sys.executable, "-m", "snakemake", "-n", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path),
                        "--configfile", str(user), "--cores", "1"], capture_output=True, text=True, timeout=300)
    out = r.stdout + r.stderr
    # the config is valid on its own (no demo keys merged in); the run stops at the missing inventory, naming it
    assert r.returncode != 0
    assert f"inventory file {tmp_path / 'none.gpkg'} does not exist" in out, out[-3000:]
    assert "invalid configuration" not in out and "dhdt-2010-2014" not in out


def test_unknown_channel_source_or_kind_is_named_before_any_job():
    with pytest.raises(ConfigError, match=r"models.dl4gam.channels: unknown channel\(s\) ndsii"):
        validate_config(_with(model={"channels": ["B04", "ndsii"]}))
    with pytest.raises(ConfigError, match=r"sources.ls.kind: unknown kind .landsat_c3.; one of sentinel2_l2a"):
        validate_config(_with(sources={"ls": {"kind": "landsat_c3"}}))
    with pytest.raises(ConfigError, match=r"imagery: 'landsat' is not a source \(sources: s2\)"):
        validate_config(_with(imagery="landsat"))
    cfg = validate_config(_with(sources={"landsat": {"kind": "landsat_c2l2", "stac": {"source": "my/catalog.json"}}},
                                imagery="landsat", model={"channels": ["red", "green", "nir", "swir1", "ndsi", "dem"]},
                                models={"dl4gam": {}}))
    assert cfg["imagery"] == "landsat"


def test_landsat_only_example_is_valid_and_needs_neither_sentinel2_nor_dhdt():
    cfg = load_config("docs/examples/landsat-only.yaml")
    assert cfg["imagery"] == "landsat" and cfg["sources"]["landsat"]["kind"] == "landsat_c2l2"
    assert cfg["stac"]["source"] is None and cfg["dhdt"] == {}
    assert all(e["dhdt"] is None for e in cfg["epochs"].values())
    assert "dhdt" not in cfg["model"]["channels"] and list(cfg["models"]) == ["dl4gam"]
    assert cfg["area_change"] == {"models": ["dl4gam"], "compare": ["dl4gam"]}  # null: every binary model


def test_raster_channels_need_a_raster_source_named_in_channel_sources():
    chans = {"model": {"channels": ["B04", "velocity", "coherence"]}, "models": {"dl4gam": {}}}
    with pytest.raises(ConfigError, match=r"channel_sources.coherence: missing, but the models' channels .* include "
                                          r"coherence(.|\n)*channel_sources.velocity: missing"):
        validate_config(_with(**chans))
    with pytest.raises(ConfigError, match=r"channel_sources.velocity: source 's2' is of kind sentinel2_l2a"):
        validate_config(_with(**chans, channel_sources={"velocity": "s2", "coherence": "nope"}))
    ok = validate_config(_with(**chans, channel_sources={"velocity": "vel", "coherence": "coh"},
                               sources={"vel": {"kind": "raster_per_year", "paths": {"2023": {"vx": "x.tif", "vy": "y.tif"}}},
                                        "coh": {"kind": "raster", "path": "coh.tif"}}))
    assert ok["channel_sources"] == {"velocity": "vel", "coherence": "coh", "temperature": None}


def test_a_raster_by_stac_item_needs_the_stac_source():
    with pytest.raises(ConfigError, match=r"dem.stac_item: needs stac.source \(the catalog holding item 'dem-glo30'\)"):
        validate_config(_with(stac={}, sources={"ls": {"kind": "landsat_c2l2", "stac": {"source": "c.json"}}},
                              imagery="ls", dem={"stac_item": "dem-glo30", "asset": "dem"}))


def test_model_variants_are_named_entries_over_the_model_and_train_defaults():
    from glaciermap.data.channels import CHANNEL_SETS
    from glaciermap.config import model_registry

    cfg = validate_config(_with(train={"members": 4, "epochs": 2},
                                models={"big": {"encoder": "resnet34", "epochs": 9},
                                        "abl": {"drop_channels": ["dhdt", "tri"], "members": 1},
                                        "rgb": {"channels": ["B04", "B03", "B02"]}, "set": {"channels": "dl4gam_no_dhdt"}}))
    m = model_registry(cfg)
    assert list(m) == ["big", "abl", "rgb", "set"]
    assert (m["big"]["encoder"], m["big"]["epochs"], m["big"]["members"]) == ("resnet34", 9, 4)
    assert m["abl"]["channels"] == [c for c in CHANNEL_SETS["dl4gam"] if c not in ("dhdt", "tri")]
    assert m["abl"]["members"] == 1 and m["abl"]["epochs"] == 2 and m["abl"]["encoder"] == m["rgb"]["encoder"]
    assert m["rgb"]["channels"] == ["B04", "B03", "B02"] and m["set"]["channels"] == CHANNEL_SETS["dl4gam_no_dhdt"]
    assert not {"pack_members", "checkpoint_every_s", "keep_last_checkpoint"} & set(m["big"])  # change no result
    assert cfg["area_change"]["models"] == ["big"]  # null: the first model
    for bad, msg in ((dict(models={"a": {"drop_channels": ["B99"]}}), r"models.a.drop_channels: 'B99' is not among"),
                     (dict(models={"a": {"channels": "nope"}}), r"models.a.channels: 'nope' is not a channel set"),
                     (dict(models={"a": {"channels": ["B04", "ndsii"]}}), r"models.a.channels: unknown channel"),
                     (dict(models={"a": {"optimizer": "sgd"}}), r"models.a: Additional properties"),
                     (dict(models={"a b": {}}), r"models: 'a b' does not match"),
                     (dict(area_change={"models": ["zz"]}), r"area_change.models: 'zz' is not an entry of `models`"),
                     (dict(area_change={"compare": ["dl4gam", "zz"]}), r"area_change.compare: 'zz' is not an entry")):
        with pytest.raises(ConfigError, match=msg):
            validate_config(_with(**bad))


def _snakemake_on_demo_config(tmp_path, inventory, *args, dl4gam_only: bool = False) -> tuple[int, str]:
    """The demo config pointed at ``inventory``, run as ``snakemake *args`` in ``tmp_path``: (returncode, output)."""
    import subprocess
    import sys

    from conftest import REPO

    from conftest import with_models

    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    cfg["inventory"]["path"] = str(inventory)
    if dl4gam_only:   # the debris model's label set points at a demo input (its map) that a test may not have
        with_models(cfg, {"dl4gam": {}, "dl4gam_no_dhdt": {"drop_channels": ["dhdt"], "members": 1}})
        cfg.pop("labels", None)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    r = subprocess.run([sys.executable, "-m", "snakemake", *args, "-s", str(REPO / "Snakefile"), "-d", str(tmp_path),
                        "--configfile", str(tmp_path / "c.yaml")], capture_output=True, text=True, timeout=300)
    return r.returncode, r.stdout + r.stderr


def test_lint_passes_before_any_data_exists(tmp_path):
    """`snakemake --lint` on a fresh clone: the inventory does not exist yet, nothing is read at parse time."""
    rc, out = _snakemake_on_demo_config(tmp_path, tmp_path / "not-yet.gpkg", "--lint")
    assert rc == 0 and "your workflow is in a good condition" in out, out[-3000:]
    assert f"inventory file {tmp_path / 'not-yet.gpkg'} does not exist" in out


def test_an_inventory_without_mappable_glaciers_stops_before_any_job(tmp_path):
    """An emptied inventory (or one whose outlines all fail the checks) stops the DAG build, naming the reasons:
    no job runs, so no frozen split or earlier summary is touched."""
    import geopandas as gpd
    from shapely.geometry import box

    inv = gpd.GeoDataFrame({"glac_id": ["A", "B"], "src_date": ["2015-08-20", "2015-08-20"]},
                           geometry=[box(0, 0, 10, 10), box(100, 0, 120, 20)], crs="EPSG:32632")  # 100 and 400 m2
    inv.to_file(tmp_path / "inv.gpkg")
    rc, out = _snakemake_on_demo_config(tmp_path, tmp_path / "inv.gpkg", "-n", dl4gam_only=True)
    assert rc != 0 and "no mappable glacier in the inventory" in out, out[-3000:]
    assert "2 small (e.g. area 0.0001 km2 below min_area_km2 0.1)" in out, out[-3000:]


def test_k_class_models_label_sets_and_importance_are_checked_before_any_job(tmp_path):
    from glaciermap.config import label_set_channels, model_registry, used_label_sets

    debris = tmp_path / "debris.gpkg"
    debris.write_text("")   # existence is what the config check looks at
    sets = {"ice_debris": {"classes": [{"name": "background", "rule": "rest"}, {"name": "ice", "rule": "outline"},
                                       {"name": "debris", "rule": "map", "path": str(debris), "within": "outline"},
                                       {"name": "water", "rule": "channel", "channel": "ndwi", "above": 0.17,
                                        "outside": "outline"}]}}
    models = {"dl4gam": {}, "deb": {"labels": "ice_debris", "arch": "UnetPlusPlus", "weight_decay": 1e-4,
                                    "model_kwargs": {"decoder_attention_type": "scse"}}}
    cfg = validate_config(_with(labels=sets, models=models, importance={"models": ["deb"]}))
    m = model_registry(cfg)
    assert m["deb"]["classes"] == ["background", "ice", "debris", "water"] and m["dl4gam"]["classes"] == ["glacier"]
    assert m["deb"]["label_rules"] == sets["ice_debris"] and m["dl4gam"]["label_rules"] is None
    assert m["deb"]["weight_decay"] == 1e-4 and m["dl4gam"]["weight_decay"] == 0
    assert m["dl4gam"]["training_data"] == "cubes"  # the default; a binary model may read the training store
    assert model_registry(validate_config(_with(models={"dl4gam": {"training_data": "store"}})))["dl4gam"][
        "training_data"] == "store"
    # the defaults of area_change leave the K-class model out; its threshold channel becomes a cube layer
    assert cfg["area_change"] == {"models": ["dl4gam"], "compare": ["dl4gam"]}
    assert used_label_sets(cfg) == ["ice_debris"] and label_set_channels(cfg) == ["ndwi"]
    for bad, msg in ((dict(models={"a": {"labels": "nope"}}), r"models.a.labels: 'nope' is neither `glacier`"),
                     (dict(models=models, area_change={"models": ["deb"]}),
                      r"area_change.models: 'deb' is a K-class model \(labels: ice_debris\)"),
                     (dict(labels={"glacier": sets["ice_debris"]}), r"labels.glacier: .*reserved"),
                     (dict(labels={"s": {"classes": [{"name": "a", "rule": "rest"},
                                                     {"name": "b", "rule": "channel", "channel": "ndwii", "above": 0}]}}),
                      r"labels.s: unknown channel"),
                     (dict(importance={"models": ["zz"]}), r"importance.models: 'zz' is not an entry of `models`"),
                     (dict(importance={"groups": {"dem": ["dem"]}}), r"importance.groups.dem: a group may not be named"),
                     (dict(models={"a": {"loss": "dice"}}), r"models.a.loss: 'dice' is not one of"),
                     (dict(models={**models, "deb": {**models["deb"], "training_data": "store"}}),
                      r"models.deb.training_data: 'store' holds binary targets only"),
                     (dict(models=models, train={"training_data": "store"}),
                      r"train.training_data: 'store' holds binary targets only; 'deb'")):
        with pytest.raises(ConfigError, match=msg):
            validate_config(_with(labels=sets, **bad) if "labels" not in bad else _with(**bad))


def test_facies_and_outline_issue_mistakes_stop_before_any_job():
    ls = {"kind": "landsat_c2l2", "stac": {"source": "my/catalog.json", "collection": "landsat-c2-l2"}}
    ok = dict(sources={"ls": ls}, facies={"points": {"path": "p.gpkg"}, "source": "ls"})
    cfg = validate_config(_with(**ok))
    assert cfg["facies"]["classes"][:5] == cfg["facies"]["prunable"] and cfg["facies"]["folds"] == 6
    assert validate_config(_with(outline_issues={"models": ["dl4gam"]}))["outline_issues"]["min_region_px"] == 9
    for bad, msg in (
            (dict(facies={"points": {"path": "p.gpkg"}, "source": "nope"}), r"facies.source: 'nope' is not a source"),
            (dict(sources={"ls": {**ls, "near_date": {"window_days": 5}}}, facies={"points": {"path": "p"}, "source": "ls"}),
             r"facies.source: 'ls' has near_date"),
            (dict(facies={"points": {"path": "p"}, "source": "s2", "prunable": ["ice", "slush"]}),
             r"facies.prunable: slush not in facies.classes"),
            (dict(facies={"points": {"path": "p"}, "source": "s2", "patch_size": 32}), r"facies.patch_size: must be odd"),
            (dict(facies={"points": {"path": "p"}, "source": "s2", "smb": {"path": "smb.csv"}}),
             r"facies.maps.years: empty, but facies.smb.path is set"),
            (dict(facies={"points": {"path": "p"}, "source": "s2", "maps": {"reference": "02-30"}}),
             r"facies.maps.reference: '02-30' is not a day"),
            (dict(facies={"points": {"path": "p"}, "source": "s2", "feature_set": "all"}), r"facies.feature_set: 'all' is not one of"),
            (dict(outline_issues={"models": ["zz"]}), r"outline_issues.models: 'zz' is not an entry of `models`")):
        with pytest.raises(ConfigError, match=msg):
            validate_config(_with(**bad))
    # the source must be a scene kind
    with pytest.raises(ConfigError, match=r"facies.source: 'dem' is a raster source; the points are labelled on scenes"):
        validate_config(_with(sources={"dem": {"kind": "raster", "path": "d.tif"}},
                              facies={"points": {"path": "p"}, "source": "dem"}))


def test_time_series_mistakes_stop_before_any_job():
    ls = {"kind": "landsat_c2l2", "stac": {"source": "my/catalog.json", "collection": "landsat-c2-l2"}}
    cfg = validate_config(_with(sources={"ls": ls}, timeseries={"sources": ["ls"]}))
    ts = cfg["timeseries"]
    assert ts["max_scene_cloud"] == 10 and ts["season"] == {"north": [5, 10], "south": [11, 4]}
    assert len(ts["model"]["channels"]) == 10 and ts["smoothing"]["sigma_days"] == 120
    assert validate_config(_with())["timeseries"]["sources"] == []          # off by default
    for bad, msg in (
            (dict(timeseries={"sources": ["nope"]}), r"timeseries.sources: 'nope' is not a source"),
            (dict(sources={"dem": {"kind": "raster", "path": "d.tif"}}, timeseries={"sources": ["dem"]}),
             r"timeseries.sources: 'dem' is a raster source; the series needs scenes"),
            (dict(sources={"ls": ls}, timeseries={"sources": ["ls"], "bands": ["blue", "green", "rededge"]}),
             r"timeseries.bands: source 'ls' cannot give them: .*rededge"),
            (dict(sources={"ls": ls}, timeseries={"sources": ["ls"], "model": {"channels": ["blue", "ndvi"]}}),
             r"timeseries.model.channels: ndvi are not bands"),
            (dict(sources={"ls": ls}, timeseries={"sources": ["ls"], "bands": ["blue", "green", "red"],
                                                  "model": {"channels": ["blue", "ndsi"]}}),
             r"timeseries.model.channels: ndsi needs the bands green, swir1"),
            (dict(sources={"ls": ls}, timeseries={"sources": ["ls"], "years": [2020, 1990]}),
             r"timeseries.years: first year 2020 is after the last 1990"),
            (dict(sources={"ls": ls}, timeseries={"sources": ["ls"], "max_scene_cloud": 150}),
             r"timeseries.max_scene_cloud"),
            (dict(sources={"ls": ls}, timeseries={"sources": ["ls"], "smoothing": {"sigma_days": -1}}),
             r"timeseries.smoothing.sigma_days")):
        with pytest.raises(ConfigError, match=msg):
            validate_config(_with(**bad))
