"""Per-layer scores on a toy volume computed by hand, and the batched path against a plain reference.

Toy label map (2 x 2 x 3, flattened order) and attribution of channel ``a``::

    voxel   0    1    2    3    4    5    6    7    8    9    10   11
    label   0    1    1    2    2    3    3    6    6    6    0    1
    a       9    1   -2   0.5  0.5  -1    2    3   -1    4  -100   0

Layers 4 (deep_fat) and 5 (dfm) are absent; voxels 0 and 10 are background and must not count.
Per layer (|a| / max(a,0) / voxels): dermis 3 / 1 / 3, superficial_fat 1 / 1 / 2, sfm 3 / 2 / 2,
muscle 8 / 7 / 3; totals 15 / 11 / 10 voxels.
Channel ``zero`` is 0 inside the layers and 5 in the background: zero total mass.
Channel ``neg`` is -a: same |a|, its own positive part (dermis 2, superficial_fat 0, sfm 1, muscle 1).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from layer.aggregate import aggregate_scans, derive_measures, layer_scores, measure_names
from layer.names import LAYERS

NAN = math.nan
LABELS = np.array([0, 1, 1, 2, 2, 3, 3, 6, 6, 6, 0, 1]).reshape(2, 2, 3)
A = np.array([9, 1, -2, 0.5, 0.5, -1, 2, 3, -1, 4, -100, 0], dtype=np.float32).reshape(2, 2, 3)
ZERO = np.where(LABELS == 0, 5.0, 0.0).astype(np.float32)

# layer order: dermis, superficial_fat, sfm, deep_fat, dfm, muscle
EXPECTED_A = {
    "mass_abs": [3, 1, 3, 0, 0, 8],
    "mass_pos": [1, 1, 2, 0, 0, 7],
    "mass_share_abs": [3 / 15, 1 / 15, 3 / 15, 0, 0, 8 / 15],
    "mass_share_pos": [1 / 11, 1 / 11, 2 / 11, 0, 0, 7 / 11],
    "density_abs": [1, 0.5, 1.5, NAN, NAN, 8 / 3],
    "density_pos": [1 / 3, 0.5, 1, NAN, NAN, 7 / 3],
    "gain_abs": [(3 / 15) / 0.3, (1 / 15) / 0.2, (3 / 15) / 0.2, NAN, NAN, (8 / 15) / 0.3],
    "gain_pos": [(1 / 11) / 0.3, (1 / 11) / 0.2, (2 / 11) / 0.2, NAN, NAN, (7 / 11) / 0.3],
    "volume_share": [0.3, 0.2, 0.2, 0, 0, 0.3],
    "n_voxels": [3, 2, 2, 0, 0, 3],
}
EXPECTED_ZERO = {
    "mass_abs": [0, 0, 0, 0, 0, 0],
    "mass_pos": [0, 0, 0, 0, 0, 0],
    "mass_share_abs": [NAN] * 6,
    "mass_share_pos": [NAN] * 6,
    "density_abs": [0, 0, 0, NAN, NAN, 0],
    "density_pos": [0, 0, 0, NAN, NAN, 0],
    "gain_abs": [NAN] * 6,
    "gain_pos": [NAN] * 6,
    "volume_share": [0.3, 0.2, 0.2, 0, 0, 0.3],
    "n_voxels": [3, 2, 2, 0, 0, 3],
}
EXPECTED_NEG_POS = {
    "mass_pos": [2, 0, 1, 0, 0, 1],
    "mass_share_pos": [2 / 4, 0, 1 / 4, 0, 0, 1 / 4],
    "density_pos": [2 / 3, 0, 0.5, NAN, NAN, 1 / 3],
    "gain_pos": [0.5 / 0.3, 0, 0.25 / 0.2, NAN, NAN, 0.25 / 0.3],
}


def wide(table: pd.DataFrame, channel: str) -> dict[str, list[float]]:
    """``measure -> six values in LAYERS order`` for one channel of a ``layer_scores`` table."""
    sub = table[table["channel"] == channel].pivot(index="layer", columns="measure", values="value")
    return {m: sub.loc[list(LAYERS), m].tolist() for m in sub.columns}


def assert_values(got: dict[str, list[float]], expected: dict[str, list[float]]) -> None:
    for measure, values in expected.items():
        assert got[measure] == pytest.approx(values, rel=1e-12, abs=1e-15, nan_ok=True), measure


def toy_table() -> pd.DataFrame:
    return layer_scores(np.stack([A, ZERO, -A]), LABELS, ["a", "zero", "neg"])


def test_measure_names_fixed_order():
    assert measure_names() == [
        "mass_abs", "mass_pos", "mass_share_abs", "mass_share_pos", "density_abs", "density_pos",
        "gain_abs", "gain_pos", "volume_share", "n_voxels",
    ]


def test_hand_computed_channel_every_quantity_both_parts():
    assert_values(wide(toy_table(), "a"), EXPECTED_A)


def test_zero_total_mass_gives_nan_shares_and_background_is_ignored():
    assert_values(wide(toy_table(), "zero"), EXPECTED_ZERO)


def test_negated_channel_keeps_abs_and_has_its_own_positive_part():
    got = wide(toy_table(), "neg")
    assert_values(got, {k: v for k, v in EXPECTED_A.items() if not k.endswith("_pos")})
    assert_values(got, EXPECTED_NEG_POS)


def test_table_layout():
    table = toy_table()
    assert list(table.columns) == ["channel", "layer", "measure", "value"]
    assert len(table) == 3 * 6 * len(measure_names())
    first = table.iloc[: len(measure_names())]
    assert set(first["channel"]) == {"a"} and set(first["layer"]) == {"dermis"}
    assert first["measure"].tolist() == measure_names()
    assert table["layer"].drop_duplicates().tolist() == list(LAYERS)
    assert "volume_abs" not in set(table["measure"])


def test_background_values_do_not_change_anything():
    loud = np.where(LABELS == 0, 1e6, A).astype(np.float32)
    pd.testing.assert_frame_equal(layer_scores(loud[None], LABELS, ["a"]), layer_scores(A[None], LABELS, ["a"]))


def reference(att: np.ndarray, lab: np.ndarray) -> np.ndarray:
    """Plain masked sums, one layer at a time: ``[C, 6, 2]`` |a| and max(a,0) masses and voxel counts."""
    mass = np.zeros((att.shape[0], 6, 2))
    n = np.zeros(6)
    for i in range(6):
        mask = lab == i + 1
        n[i] = mask.sum()
        for c in range(att.shape[0]):
            vals = att[c][mask].astype(np.float64)
            mass[c, i] = np.abs(vals).sum(), np.maximum(vals, 0).sum()
    return mass, n


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batched_scans_match_plain_reference(dtype):
    rng = np.random.default_rng(3)
    n_scans, shape = 5, (6, 7, 9)
    att = rng.normal(size=(n_scans, 2) + shape).astype(dtype)
    offset = rng.integers(-1, 2, size=(n_scans, 1) + shape[1:])  # wavy boundaries
    layered = np.clip(np.arange(shape[0])[None, :, None, None] + offset, 0, 6)  # coherent layers
    fragmented = rng.integers(0, 7, size=(n_scans,) + shape)  # every voxel its own label
    for lab in (layered, fragmented):
        lab = lab.astype(np.uint8)
        table = aggregate_scans(att, lab, [f"s{i}" for i in range(n_scans)], ["b", "s"])
        assert list(table.columns) == ["scan_id", "channel", "layer", "measure", "value"]
        assert table["scan_id"].tolist()[:: 2 * 6 * len(measure_names())] == [f"s{i}" for i in range(n_scans)]
        for i in range(n_scans):
            mass, n = reference(att[i], lab[i])
            one = table[table["scan_id"] == f"s{i}"]
            single = layer_scores(att[i], lab[i], ["b", "s"])
            np.testing.assert_array_equal(one["value"].to_numpy(), single["value"].to_numpy())
            for c, channel in enumerate(["b", "s"]):
                got = wide(one, channel)
                np.testing.assert_allclose(got["mass_abs"], mass[c, :, 0], rtol=1e-12)
                np.testing.assert_allclose(got["mass_pos"], mass[c, :, 1], rtol=1e-12)
                np.testing.assert_array_equal(got["n_voxels"], n)


def test_float_label_maps_accepted_and_bad_labels_rejected():
    as_float = layer_scores(A[None], LABELS.astype(np.float32), ["a"])
    pd.testing.assert_frame_equal(as_float, layer_scores(A[None], LABELS, ["a"]))
    with pytest.raises(ValueError):
        layer_scores(A[None], np.where(LABELS == 6, 7, LABELS), ["a"])
    with pytest.raises(ValueError):
        layer_scores(A[None], LABELS + 0.5, ["a"])
    with pytest.raises(ValueError):
        layer_scores(A[None], LABELS[:, :, :2], ["a"])


def test_non_finite_attribution_inside_layers_is_an_error_but_not_in_background():
    bad = A.copy()
    bad.reshape(-1)[3] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        layer_scores(bad[None], LABELS, ["a"])
    background_nan = A.copy()
    background_nan.reshape(-1)[0] = np.nan
    assert_values(wide(layer_scores(background_nan[None], LABELS, ["a"]), "a"), EXPECTED_A)


def test_derive_measures_of_a_union_is_the_union_of_its_parts():
    """Composite = what the formulas give for the pooled voxels: the property stats relies on."""
    mass = np.array([[3.0, 1.0], [1.0, 1.0]])
    n = np.array([3.0, 2.0])
    union = derive_measures(mass.sum(axis=0), n.sum(), np.array([15.0, 11.0]), 10.0)
    assert float(union["mass_share_abs"]) == pytest.approx(4 / 15)
    assert float(union["density_pos"]) == pytest.approx(2 / 5)
    assert float(union["gain_abs"]) == pytest.approx((4 / 15) / 0.5)
    assert float(union["volume_share"]) == pytest.approx(0.5)


def test_aggregate_job_reads_maps_and_label_maps_and_adds_subjects(tmp_path):
    from layer.aggregate import aggregate_job
    from layer.io import affine_from_spacing, save_nifti

    labels = [LABELS, np.where(LABELS == 6, 5, LABELS)]
    rows = []
    for i, lab in enumerate(labels):
        path = tmp_path / f"s{i}_layers.nii.gz"
        save_nifti(lab.astype(np.uint8), affine_from_spacing((1.0, 1.0, 1.0)), path)
        rows.append({"scan_id": f"s{i}", "subject_id": f"p{i // 2}", "layers": str(path)})
    maps = np.stack([np.stack([A, -A]), np.stack([A, ZERO])])
    np.savez_compressed(tmp_path / "job.npz", maps=maps, scan_ids=np.array(["s0", "s1"]), channels=np.array(["b", "s"]))
    table = aggregate_job(str(tmp_path / "job.npz"), pd.DataFrame(rows), scans_per_chunk=1)
    assert list(table.columns) == ["scan_id", "subject_id", "channel", "layer", "measure", "value"]
    assert set(table["subject_id"]) == {"p0"}
    expected = aggregate_scans(maps, np.stack(labels), ["s0", "s1"], ["b", "s"])
    np.testing.assert_array_equal(table["value"].to_numpy(), expected["value"].to_numpy())


# --- compiled kernel (numba) against the numpy bincount reference -------------------------------------


def random_case(rng, n, c, shape, kind, dtype=np.float32):
    """Attributions with negatives and exact zeros, labels of one spatial ``kind``, some absent layers."""
    att = rng.normal(size=(n, c) + shape).astype(dtype)
    att[rng.random(att.shape) < 0.1] = 0
    if kind == "slabs":  # whole slices of one label: uniform blocks
        lab = np.broadcast_to(np.linspace(0, 6.99, shape[0]).astype(np.uint8)[None, :, None, None], (n,) + shape)
    elif kind == "wavy":  # slabs with stepped boundaries: rows of a few runs, blocks of a few runs
        shift = rng.integers(0, shape[1], size=(n, 1, 1, 1))
        offset = ((np.arange(shape[1])[:, None] + shift) * 3 // shape[1]) % 3 - 1
        lab = np.clip(np.arange(shape[0])[None, :, None, None] * 7 // shape[0] + offset, 0, 6)
        lab = np.broadcast_to(lab, (n,) + shape)
    else:  # every voxel its own label: fragmented blocks
        lab = rng.integers(0, 7, size=(n,) + shape)
    lab = np.array(lab, dtype=np.uint8)
    lab[lab == 4] = 5  # deep_fat absent everywhere
    lab[0] = 0  # first scan all background
    return att, lab


@pytest.mark.parametrize("kind", ["slabs", "wavy", "fragmented"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernel_matches_bincount_reference(kind, dtype):
    from layer.aggregate import _bincount_sums, _sums

    rng = np.random.default_rng(11)
    for n, c, shape in [(3, 1, (7, 5, 3)), (4, 2, (12, 8, 8)), (2, 3, (9, 16, 16)), (3, 2, (1, 1, 1))]:
        att, lab = random_case(rng, n, c, shape, kind, dtype)
        v = int(np.prod(shape))
        a, lb = att.reshape(n, c, v), lab.reshape(n, v)
        want_mass, want_counts = _bincount_sums(a, lb)
        # small blocks reach every kind of block (uniform, few runs, fragmented) and a partial last block
        for block in (1, 3, 8, 16, 24, 128, 4096):
            mass, counts = _sums(a, lb, block)
            np.testing.assert_array_equal(counts, want_counts)
            np.testing.assert_allclose(mass, want_mass, rtol=1e-12, atol=1e-12)
            assert (mass[0, :, 1:] == 0).all() and (counts[0, 1:] == 0).all()  # all-background scan
            assert (mass[:, :, 4] == 0).all() and (counts[:, 4] == 0).all()  # absent layer
            assert (mass[..., 0] >= mass[..., 1]).all() and (mass >= 0).all()


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_kernel_non_finite_values_reach_the_same_sums_as_the_reference(value):
    from layer.aggregate import _bincount_sums, _sums

    rng = np.random.default_rng(5)
    att, lab = random_case(rng, 3, 2, (8, 8, 8), "wavy")
    a, lb = att.reshape(3, 2, -1), lab.reshape(3, -1)
    for i in (3, 200, 511):  # uniform block, boundary block, last voxel
        a[1, 1, i] = value
    want = np.isfinite(_bincount_sums(a, lb)[0])
    for block in (4, 16, 128):
        mass = _sums(a, lb, block)[0]
        np.testing.assert_array_equal(np.isfinite(mass), want)
        assert not np.isfinite(mass[1, 1, lb[1, 3], 0])  # abs part always catches the bad value


def test_aggregate_scans_any_label_dtype_layout_and_float_dtype_give_the_same_table():
    rng = np.random.default_rng(2)
    att, lab = random_case(rng, 4, 2, (6, 8, 8), "wavy")
    ids, chans = [f"s{i}" for i in range(4)], ["b", "s"]
    base = aggregate_scans(att, lab, ids, chans)
    for other in (lab.astype(np.int16), lab.astype(np.int64), lab.astype(np.float32)):
        pd.testing.assert_frame_equal(aggregate_scans(att, other, ids, chans), base)
    fortran = np.asfortranarray(att)
    pd.testing.assert_frame_equal(aggregate_scans(fortran, lab, ids, chans), base)
    flipped = aggregate_scans(att[:, ::-1], lab, ids, chans[::-1])  # strided view, channels swapped
    pd.testing.assert_frame_equal(flipped.sort_values(["scan_id", "channel"], kind="stable", ignore_index=True),
                                  base.sort_values(["scan_id", "channel"], kind="stable", ignore_index=True))
    as16 = aggregate_scans(att.astype(np.float16), lab, ids, chans)
    exact = aggregate_scans(att.astype(np.float16).astype(np.float64), lab, ids, chans)
    pd.testing.assert_frame_equal(as16, exact)


def test_layer_scores_of_a_removal_method_aggregate_like_a_map(tmp_path):
    """A Shapley / ablation job stores one signed score per layer; aggregate_job turns it into the same
    measures as a map whose attribution sums to that score inside the layer (hand-computed)."""
    from layer.aggregate import aggregate_job
    from layer.io import save_arrays, save_nifti

    save_nifti(LABELS.astype(np.int16), np.eye(4), tmp_path / "s1_layers.nii.gz")
    sheet = pd.DataFrame({"scan_id": ["s1"], "subject_id": ["p1"], "layers": [str(tmp_path / "s1_layers.nii.gz")]})
    scores = np.array([[[2.0, -1.0, 0.5, 0.0, 0.0, -0.5]]])  # dermis .. muscle; deep_fat, dfm absent
    save_arrays(tmp_path / "job.npz", scores=scores, scan_ids=np.array(["s1"]), channels=np.array(["all"]))
    table = aggregate_job(str(tmp_path / "job.npz"), sheet).set_index(["layer", "measure"])["value"]
    # |s| = 2, 1, 0.5, 0, 0, 0.5 (total 4); max(s, 0) = 2, 0, 0.5, 0, 0, 0 (total 2.5)
    for layer, share_abs, share_pos in zip(LAYERS, [0.5, 0.25, 0.125, 0, 0, 0.125], [0.8, 0, 0.2, 0, 0, 0]):
        assert table[(layer, "mass_share_abs")] == pytest.approx(share_abs)
        assert table[(layer, "mass_share_pos")] == pytest.approx(share_pos)
    assert table[("dermis", "n_voxels")] == 3 and table[("muscle", "n_voxels")] == 3
    assert table[("sfm", "density_abs")] == pytest.approx(0.25)  # 0.5 over 2 voxels
    # the signed score is recoverable: 2 * mass_pos - mass_abs
    signed = [2 * table[(x, "mass_pos")] - table[(x, "mass_abs")] for x in LAYERS]
    np.testing.assert_allclose(signed, scores[0, 0])


def test_membrane_margin_moves_partial_volume_voxels_into_the_membrane(tmp_path):
    """A DFM echo that spills into the voxel above it (deep fat by the drawn label) counts for the DFM once
    the attribution regions give the DFM its one-voxel margin (layer.regions.membranes); hand-computed."""
    from layer.aggregate import aggregate_job
    from layer.io import save_arrays, save_nifti

    drawn = np.array([1, 2, 2, 3, 4, 4, 4, 5, 6, 6, 6], dtype=np.int16)[:, None, None]
    save_nifti(drawn, np.eye(4), tmp_path / "s1_layers.nii.gz")
    sheet = pd.DataFrame({"scan_id": ["s1"], "subject_id": ["p1"], "layers": [str(tmp_path / "s1_layers.nii.gz")]})
    maps = np.zeros((1, 1, 11, 1, 1))
    maps[0, 0, 6, 0, 0] = 1.0  # deep fat voxel just above the DFM
    maps[0, 0, 7, 0, 0] = 3.0  # the DFM
    save_arrays(tmp_path / "job.npz", maps=maps, scan_ids=np.array(["s1"]), channels=np.array(["bmode"]))
    drawn_table = aggregate_job(str(tmp_path / "job.npz"), sheet).set_index(["layer", "measure"])["value"]
    wide = aggregate_job(str(tmp_path / "job.npz"), sheet, membrane_margin=1).set_index(["layer", "measure"])["value"]
    assert drawn_table[("deep_fat", "mass_share_abs")] == pytest.approx(0.25)
    assert drawn_table[("dfm", "mass_share_abs")] == pytest.approx(0.75)
    # Margin 1: SFM takes rows 2 and 4, the DFM rows 6 and 8; deep fat keeps row 5 only.
    assert wide[("deep_fat", "mass_share_abs")] == 0.0 and wide[("dfm", "mass_share_abs")] == pytest.approx(1.0)
    assert [wide[(x, "n_voxels")] for x in LAYERS] == [1, 1, 3, 1, 3, 2]
