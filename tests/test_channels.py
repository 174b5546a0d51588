"""The channel registry, the new channel computations (indices, texture, hillshade, cast shadow, sun) and
the reflectance quantisation that keeps the float32 layer stack equal to the former uint16 variables."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from glaciermap.data import channels, indices, terrain

from glaciermap.segmentation import patches
from glaciermap.data.channels import CHANNEL_SETS, ChannelError, cube_layers, get_channel, validate_channels

# the curvatures with DL4GAM's own definitions (xdem 0.1.0, docs/terrain.md): curv_*_ref, not xdem 0.2.3's curv_*
DL4GAM_BEFORE = ["B04", "B03", "B02", "B08", "B11", "ndsi", "ndwi", "ndvi", "dem", "slope", "aspect_sin",
                 "aspect_cos", "tri", "curv_planform_ref", "curv_profile_ref", "dhdt"]


def test_the_dl4gam_set_is_the_former_channel_list():
    from glaciermap.data.features import DL4GAM_CHANNELS

    assert CHANNEL_SETS["dl4gam"] == DL4GAM_BEFORE == DL4GAM_CHANNELS
    assert channels.resolve_channels("dl4gam") == DL4GAM_BEFORE and channels.resolve_channels(None) == DL4GAM_BEFORE
    # normalisation and patch fill as patches applied them before the registry
    assert [c for c in DL4GAM_BEFORE if get_channel(c).normalisation == "none"] == \
        ["ndsi", "ndwi", "ndvi", "aspect_sin", "aspect_cos"]
    assert {c: get_channel(c).scale for c in DL4GAM_BEFORE if get_channel(c).normalisation == "divide"} == {"slope": 90.0}
    assert [c for c in DL4GAM_BEFORE if get_channel(c).patch_fill == "zero"] == ["dhdt"]
    assert patches.channel_transform("slope") == "divide" and patches.channel_transform("dem") == "standardise"
    assert get_channel("dem").fill == "nearest" and get_channel("dhdt").fill == "nan"


def test_every_channel_declares_what_it_needs():
    for name, ch in channels.REGISTRY.items():
        assert ch.name == name and ch.units and ch.long_name and ch.description and ch.sources, name
        assert ch.fill in channels.FILL_RULES and ch.normalisation in channels.NORMALISATIONS, name
        # a stored layer is computed when the cube is built; a fold-fitted one (pca) from the layers it names
        assert callable(ch.compute) if ch.stored else (ch.compute is None and set(ch.inputs) <= set(channels.REGISTRY)), name
    assert "| `ndsi` | index | 1 | sentinel2 |" in channels.channels_markdown()
    assert {c for c, ch in channels.REGISTRY.items() if not ch.stored} == {"pca1", "pca2", "pca3"}


def test_unknown_and_repeated_channels_are_named():
    with pytest.raises(ChannelError) as e:
        validate_channels(["B04", "ndzz", "B4", "slope", "B04"])
    assert e.value.unknown == ["ndzz", "B4"] and e.value.duplicates == ["B04"]
    msg = str(e.value)
    assert "ndzz" in msg and "B4" in msg and "repeated" in msg and "Known channels: B01" in msg and "ndsi" in msg
    assert isinstance(e.value, ValueError)
    with pytest.raises(ChannelError):
        validate_channels([])
    for bad in ("ratio_red_purple", "glcm_dissimilarity_B99_w5", "glcm_dissimilarity_B04_w4"):
        with pytest.raises(ChannelError, match=bad):
            get_channel(bad)
    assert validate_channels(["ratio_nir_swir2", "glcm_dissimilarity_B04_w9"]) == ["ratio_nir_swir2",
                                                                                      "glcm_dissimilarity_B04_w9"]


def test_cube_layers_and_sources():
    assert cube_layers(DL4GAM_BEFORE) == (DL4GAM_BEFORE, ["sentinel2", "dem", "dhdt"])
    assert cube_layers(["B04", "ndsi"]) == (["B04", "ndsi"], ["sentinel2"])
    assert cube_layers(["slope", "hillshade"])[1] == ["sun", "dem"]
    assert cube_layers(["velocity", "coherence", "surface_temperature"])[1] == ["velocity", "coherence", "temperature"]
    assert channels.sources_of(CHANNEL_SETS["dl4gam_no_dhdt"]) == ["sentinel2", "dem"]
    # what the baseline, comparison and figures read comes too when asked for
    assert cube_layers(["ndsi", "B04"], extra=channels.READER_LAYERS)[0] == ["ndsi", "B04", "B03", "B02", "B08", "B11"]
    assert cube_layers(DL4GAM_BEFORE, extra=channels.READER_LAYERS)[0] == DL4GAM_BEFORE


def test_quantised_reflectance_is_what_the_uint16_file_gave_back(tmp_path):
    rng = np.random.default_rng(1)
    v = rng.uniform(0, 1.2, 20000).astype(np.float32)
    v[:50] = np.nan
    v[50:60] = 0.00004                       # rounds to DN 0 = no data
    v[60:70] = np.float32(0.12345)           # exact half-DN ties in float32 / float64
    v[70:80] = (np.arange(10) * 25 + 1000) * 1e-4
    xr.Dataset({"b": ("i", v)}).to_netcdf(tmp_path / "u.nc", engine="h5netcdf",
                                         encoding={"b": {"dtype": "uint16", "scale_factor": 1e-4, "_FillValue": 0}})
    with xr.open_dataset(tmp_path / "u.nc", engine="h5netcdf") as ds:
        back = ds["b"].values.astype(np.float32)
    q = channels.quantise_reflectance(v)
    assert q.dtype == np.float32 and np.array_equal(q, back, equal_nan=True)
    assert np.isnan(q[50:60]).all()
    assert np.array_equal(channels.quantise_reflectance(q), q, equal_nan=True)   # idempotent


def test_ndgi_and_band_ratio():
    g = np.array([0.3, 0.2, 0.0, np.nan])
    r = np.array([0.1, 0.2, 0.0, 0.1])
    np.testing.assert_allclose(indices.ndgi(g, r), [0.5, 0.0, np.nan, np.nan])
    np.testing.assert_allclose(indices.band_ratio(g, r), [3.0, 1.0, np.nan, np.nan])
    np.testing.assert_allclose(indices.band_ratio(np.array([1.0]), np.array([0.0])), [np.nan])


def _glcm_dissimilarity_by_definition(q_win, levels):
    """scikit-image's graycomatrix (symmetric, normed, distance 1, 4 angles) + graycoprops dissimilarity, in numpy."""
    h, w = q_win.shape
    vals = []
    for dr, dc in indices.GLCM_OFFSETS:
        P = np.zeros((levels, levels))
        for r in range(h):
            for c in range(w):
                r2, c2 = r + dr, c + dc
                if 0 <= r2 < h and 0 <= c2 < w:
                    P[q_win[r, c], q_win[r2, c2]] += 1
        P = P + P.T
        P /= P.sum()
        i, j = np.indices(P.shape)
        vals.append((P * np.abs(i - j)).sum())
    return float(np.mean(vals))


@pytest.mark.parametrize("window", [3, 4, 7])
def test_glcm_dissimilarity_equals_the_glcm_definition(window):
    rng = np.random.default_rng(window)
    v = rng.uniform(0, 1, (20, 23)).astype(np.float32)
    v[15, 3] = np.nan
    got = indices.glcm_dissimilarity(v, window=window, levels=16)
    q = indices.quantise_levels(v, 16)
    lo, hi = window // 2, window - 1 - window // 2
    for r, c in [(lo, lo), (10, 11), (19 - hi, 22 - hi), (5, 17)]:
        exp = _glcm_dissimilarity_by_definition(q[r - lo:r + hi + 1, c - lo:c + hi + 1], 16)
        assert got[r, c] == pytest.approx(exp, rel=1e-6), (r, c)
    assert np.isnan(got[:lo]).all() and np.isnan(got[:, :lo]).all()        # the window reaches outside
    assert np.isnan(got[got.shape[0] - hi:]).all() and np.isnan(got[:, got.shape[1] - hi:]).all()
    assert np.isnan(got[15, 3]) and np.isnan(got[15 + lo, 3]) and np.isnan(got[15 - hi, 3 + hi])  # window holds the NaN
    assert np.isfinite(got[15 - hi - 1, 3 + hi + lo]) and np.isfinite(got[lo:20 - hi, lo + 5:23 - hi]).all()
    from skimage.feature import graycomatrix, graycoprops  # the library this hand-written version must agree with

    win = q[10 - lo:10 + hi + 1, 11 - lo:11 + hi + 1].astype(np.uint8)
    P = graycomatrix(win, [1], [0, np.pi / 4, np.pi / 2, 3 * np.pi / 4], levels=16, symmetric=True, normed=True)
    assert got[10, 11] == pytest.approx(graycoprops(P, "dissimilarity").mean(), rel=1e-6)


def test_hillshade_of_planes():
    flat = np.full((10, 10), 1000.0)
    np.testing.assert_allclose(terrain.hillshade(flat, 10.0, 135.0, 30.0), np.sin(np.radians(30.0)), atol=1e-12)
    # a plane facing south at 45 deg, sun from the south at 45 deg: surface normal points at the sun
    y = np.arange(10)[:, None] * 10.0
    south = np.tile(1000.0 - y, (1, 10))   # rows go south, elevation falls southward
    np.testing.assert_allclose(terrain.hillshade(south, 10.0, 180.0, 45.0), 1.0, atol=1e-12)
    np.testing.assert_allclose(terrain.hillshade(south, 10.0, 0.0, 30.0), 0.0, atol=1e-12)   # faces away


def test_cast_shadow_behind_a_wall():
    z = np.zeros((40, 60))
    z[:, 20] = 100.0                         # a north-south wall, 100 m high, at column 20
    el = 45.0                                # shadow length 100 m = 10 px at 10 m
    sh = terrain.cast_shadow(z, 10.0, 270.0, el)       # sun in the west: shadow east of the wall
    row = sh[20]
    assert not row[:20].any() and not row[20]
    assert row[21:30].all() and not row[32:].any()
    assert not terrain.cast_shadow(z, 10.0, 90.0, el)[20, 21:].any()   # sun in the east: shadow west
    assert terrain.cast_shadow(z, 10.0, 90.0, el)[20, 11:20].all()
    assert terrain.cast_shadow(z, 10.0, 270.0, -1.0).all()             # night
    assert not terrain.cast_shadow(np.zeros((5, 5)), 10.0, 200.0, 10.0).any()


def test_sun_position():
    # local solar noon near the June solstice at 46 N: due south, elevation ~ 90 - 46 + 23.44
    az, el = terrain.sun_position("2023-06-21T12:00:00", 0.0, 46.0)
    assert az == pytest.approx(180.0, abs=2.0) and el == pytest.approx(67.4, abs=0.3)  # equation of time ~ -2 min
    az, el = terrain.sun_position("2023-03-20T06:00:00", 0.0, 0.0)     # equinox sunrise at the equator: east
    assert az == pytest.approx(90.0, abs=1.0) and el == pytest.approx(-1.9, abs=0.3)  # equation of time -7.5 min
    assert terrain.sun_position("2023-06-21T00:00:00", 0.0, 46.0)[1] < 0
