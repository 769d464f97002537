"""Synthetic cohort: planted effects recovered, speckle statistics, echogenicity order, SWE, files, CLI.

Numbers checked here are the ones docs/synthetic-cohort.md reports; every bound is one the generator could
miss (a broken stream, an envelope averaged instead of sampled, a renderer ignoring a feature).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from layer.cli import main
from layer.names import FEATURES, LABEL_VALUES, LAYERS, SHEET_COLUMNS
from layer.synth import (
    SynthConfig,
    SynthConfigError,
    draw_design,
    draw_features,
    marginal_d,
    recovered_d,
    render_preview,
    render_scan,
    synthesize_chunk,
    synthesize_cohort,
    time_scan,
)
from layer.synth.anatomy import ScanParams, fine_factor
from layer.synth.bmode import speckle_field
from layer.synth.cohort import finalize_cohort
from layer.synth.truth import PAIRS, cohort_labels, ground_truth, oracle_auc_analytic

SMALL = {"shape": (32, 16, 16), "spacing": (1.2, 2.5, 2.5)}  # the smoke preset's volumes
STUDY = {"shape": (48, 32, 32), "spacing": (0.8, 1.25, 1.25)}  # the default study's volumes


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _scan_params(design, row: int) -> ScanParams:
    from layer.synth.truth import NUISANCE_COLUMNS, wide_values

    scan = design.scans.iloc[row]
    values = wide_values(design.features).loc[scan.scan_id].to_dict()
    return ScanParams.from_values(values, **{k: scan[k] for k in NUISANCE_COLUMNS})


# --- configuration -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mapping", "key"),
    [
        ({"presets": "strong"}, "presets"),
        ({"preset": "medium"}, "preset"),
        ({"preset": "strong", "effects": [{"layer": "dfm", "feature": "thickness", "d": 1}]}, "effects"),
        ({"preset": "custom", "effects": [{"layer": "fat", "feature": "thickness", "d": 1}]}, "effects"),
        ({"preset": "custom", "effects": [{"layer": "dfm", "feature": "colour", "d": 1}]}, "effects"),
        ({"n_subjects": 1}, "n_subjects"),
        ({"scans_per_subject": 2.5}, "scans_per_subject"),
        ({"shape": [48, 32]}, "shape"),
        ({"shape": [48, 32, 32], "spacing": 0.4}, "spacing"),  # 19 mm field of view: muscle not guaranteed
        ({"spacing": [2.0, 1.0, 1.0]}, "spacing"),
        ({"label_noise": 0.7}, "label_noise"),
        ({"seed": -1}, "seed"),
    ],
)
def test_config_errors_name_the_key(mapping, key):
    with pytest.raises(SynthConfigError, match=rf"^synthetic\.{key}: "):
        SynthConfig.from_mapping(mapping)


def test_config_accepts_the_workflow_block():
    block = {
        "preset": "custom",
        "effects": [{"layer": "sfm", "feature": "stiffness", "d": 0.8}],
        "n_subjects": 10,
        "scans_per_subject": 3,
        "shape": [48, 32, 32],
        "spacing": [0.8, 1.25, 1.25],
        "label_noise": 0.1,
        "prevalence": 0.3,
        "seed": 7,
    }
    assert set(block) == set(SynthConfig.CONFIG_KEYS)
    cfg = SynthConfig.from_mapping(block)
    assert cfg.spacing == (0.8, 1.25, 1.25) and cfg.shape == (48, 32, 32)
    assert cfg.effects[0].d == 0.8 and SynthConfig.from_mapping(cfg.to_mapping()) == cfg
    assert SynthConfig(spacing=0.9).spacing == (0.9, 0.9, 0.9)
    assert SynthConfig(shape=(64, 64, 64)).spacing == (0.703125,) * 3  # auto: 45 mm of depth


# --- ground truth (features only, large cohorts) ----------------------------------------------------------


@pytest.mark.parametrize(
    "cfg",
    [
        SynthConfig(preset="realistic", n_subjects=8000, scans_per_subject=1, seed=11),
        SynthConfig(preset="strong", n_subjects=6000, scans_per_subject=2, seed=12),
        SynthConfig(preset="null", n_subjects=6000, scans_per_subject=2, seed=13),
        SynthConfig(
            preset="custom",
            effects=(
                {"layer": "sfm", "feature": "texture", "d": -0.8},
                {"layer": "dermis", "feature": "stiffness", "d": 0.4},
            ),
            n_subjects=6000,
            scans_per_subject=2,
            seed=14,
        ),
    ],
    ids=lambda c: c.preset,
)
def test_planted_d_recovered_from_features(cfg):
    features = draw_features(cfg)
    assert len(features) == cfg.n_subjects * cfg.scans_per_subject * len(LAYERS) * len(FEATURES)
    got = recovered_d(features)
    expected = marginal_d(cfg)
    assert np.all(np.abs(got["d"].to_numpy() - expected) < 0.15), got.assign(expected=expected)
    no_effect = expected == 0.0
    assert np.all(np.abs(got["d"].to_numpy()[no_effect]) < 0.15)
    if cfg.preset == "realistic":
        deep = PAIRS.index(("deep_fat", "thickness"))
        assert expected[deep] == pytest.approx(0.4) and got["d"][deep] > 0.25  # confounded, not planted
        truth = ground_truth(cfg, features)
        assert {"layer": "deep_fat", "feature": "thickness", "d": 0.4} in truth["expected_marginal_d"]
        assert all(e["layer"] != "deep_fat" for e in truth["effects"])


def test_oracle_auc():
    aucs = {}
    for preset in ("realistic", "strong", "null"):
        cfg = SynthConfig(preset=preset, n_subjects=4000, scans_per_subject=2, seed=3)
        truth = ground_truth(cfg, draw_features(cfg))
        aucs[preset] = truth["oracle_auc"]
        assert truth["oracle_auc"] == pytest.approx(truth["oracle_auc_analytic"], abs=0.02)
    assert aucs["null"] == 0.5 and aucs["realistic"] == pytest.approx(0.78, abs=0.02) and aucs["strong"] > 0.87
    noisy = SynthConfig(preset="realistic", n_subjects=4000, scans_per_subject=2, seed=3, label_noise=0.2)
    truth = ground_truth(noisy, draw_features(noisy))
    # flips shrink the AUC towards 0.5 by (1 - 2 * 0.2)
    assert truth["oracle_auc"] == pytest.approx(0.5 + 0.6 * (oracle_auc_analytic(noisy) - 0.5), abs=0.02)
    assert truth["n_labels_flipped"] == 800


def test_labels_balanced_and_flipped_once_for_the_cohort():
    true, written = cohort_labels(SynthConfig(n_subjects=21, label_noise=0.2, seed=4))
    assert true.sum() in (10, 11) and (true != written).sum() == 4
    assert cohort_labels(SynthConfig(n_subjects=20, seed=5))[0].sum() == 10


@pytest.mark.parametrize(("n", "prevalence", "expected"), [(40, 0.25, {10}), (240, 0.25, {60}), (21, 0.25, {5, 6}),
                                                         (20, 0.5, {10}), (30, 0.1, {3})])
def test_prevalence_is_exact_where_it_can_be(n, prevalence, expected):
    counts = {int(cohort_labels(SynthConfig(n_subjects=n, prevalence=prevalence, seed=s))[0].sum()) for s in range(8)}
    assert counts <= expected and (len(expected) == 1 or counts == expected)


def test_prevalence_reaches_every_fold_of_the_split():
    from layer.cohort.split import make_folds
    from layer.synth.truth import draw_design

    scans = draw_design(SynthConfig(n_subjects=120, scans_per_subject=2, prevalence=0.25, seed=3)).scans
    folds = make_folds(scans, n_folds=3, val_fraction=0.2, seed=0)
    test = folds[folds["role"] == "test"].drop_duplicates("subject_id")
    per_fold = test.groupby("fold")["label"].agg(["sum", "size"])
    assert per_fold["size"].tolist() == [40, 40, 40] and per_fold["sum"].tolist() == [10, 10, 10]
    with pytest.raises(ValueError, match="prevalence"):
        SynthConfig(prevalence=1.0)


def test_feature_distributions_match_the_sourced_table():
    cfg = SynthConfig(preset="null", n_subjects=3000, scans_per_subject=1, seed=2)
    med = draw_features(cfg).groupby(["layer", "feature"])["value"].median()
    # thickness (mm): phantom.md table
    assert med["dermis", "thickness"] == pytest.approx(2.0, abs=0.05)
    assert 3.0 <= med["superficial_fat", "thickness"] <= 5.0 and 4.0 <= med["deep_fat", "thickness"] <= 8.0
    assert med["sfm", "thickness"] == pytest.approx(0.6, abs=0.02) and med["dfm", "thickness"] == pytest.approx(
        1.3, abs=0.03
    )
    # shear-wave speed (m/s): phantom.md ranges
    ranges = {
        "dermis": (1.8, 2.4),
        "superficial_fat": (1.0, 1.8),
        "deep_fat": (1.0, 1.8),
        "sfm": (3.0, 5.0),
        "dfm": (3.0, 4.0),
        "muscle": (2.0, 2.45),
    }
    for layer, (lo, hi) in ranges.items():
        assert lo <= med[layer, "stiffness"] <= hi, layer
    # echogenicity order of the planted parenchyma (dB): fat < muscle < dermis < fascia
    e = {layer: med[layer, "echogenicity"] for layer in LAYERS}
    assert max(e["superficial_fat"], e["deep_fat"]) < e["muscle"] < e["dermis"] < min(e["sfm"], e["dfm"])


# --- rendering ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("spacing", [0.6, 0.9375, 0.35])
def test_rayleigh_ratio_of_homogeneous_speckle(spacing):
    fine = fine_factor(spacing)
    amplitude = np.ones((48 * fine, 48, 48), dtype=np.float32)
    env = np.abs(speckle_field(amplitude, (spacing,) * 3, fine, np.random.default_rng(0)))
    assert env.mean() / env.std() == pytest.approx(1.91, abs=0.1)  # Wagner et al. 1983
    assert np.mean(env**2) == pytest.approx(1.0, abs=0.05)  # PSF normalised: mean power = backscatter


def test_rayleigh_ratio_in_rendered_muscle_without_fibres():
    params = ScanParams.typical()
    params = dataclasses.replace(params, texture=np.where(np.arange(6) == 5, 0.0, params.texture))
    out = render_scan(params, (64, 48, 48), (0.6, 0.6, 0.6), np.random.default_rng(1), keep_envelope=True)
    ratios = [out.envelope[i][out.layers[i] == 6] for i in range(64) if (out.layers[i] == 6).all()]
    assert len(ratios) > 10
    assert np.mean([r.mean() / r.std() for r in ratios]) == pytest.approx(1.91, abs=0.1)


def test_echogenicity_order_of_rendered_bmode():
    cfg = SynthConfig(preset="null", n_subjects=16, scans_per_subject=1, seed=8, **STUDY)
    design = draw_design(cfg)
    grey = {k: [] for k in range(7)}
    for row in range(len(design.scans)):
        out = render_scan(_scan_params(design, row), cfg.shape, cfg.voxel_mm, np.random.default_rng(row))
        for k in grey:
            grey[k].append(out.bmode[out.layers == k])
    mean = {name: float(np.concatenate(grey[v]).mean()) for name, v in LABEL_VALUES.items()}
    fascia = float(np.concatenate(grey[3] + grey[5]).mean())
    assert max(mean["superficial_fat"], mean["deep_fat"]) + 0.05 < mean["muscle"]
    assert mean["muscle"] + 0.1 < mean["dermis"] < fascia and mean["dermis"] < mean["dfm"]
    assert mean["sfm"] > mean["muscle"] + 0.1


def test_swe_box_artefacts_and_ranges():
    cfg = SynthConfig(preset="null", n_subjects=6, scans_per_subject=1, seed=9, **STUDY)
    design = draw_design(cfg)
    observed = {k: [] for k in (2, 4, 5, 6)}
    for row in range(len(design.scans)):
        params = _scan_params(design, row)
        out = render_scan(params, cfg.shape, cfg.voxel_mm, np.random.default_rng(row))
        finite = np.isfinite(out.swe)
        idx = [np.flatnonzero(finite.any(axis=tuple(a for a in range(3) if a != ax))) for ax in range(3)]
        box = tuple(slice(i[0], i[-1] + 1) for i in idx)
        inside = out.swe[box]
        assert finite.sum() == np.isfinite(inside).sum()  # NaN everywhere outside the box
        assert box[2] == slice(0, cfg.shape[2]) and 0 < box[1].start < box[1].stop < cfg.shape[1]
        assert np.isnan(inside).mean(axis=(1, 2)).max() <= 0.10  # dropout rare even at the bottom
        assert np.isnan(inside[:3]).mean() < np.isnan(inside[-3:]).mean()  # and rising with depth
        assert np.nanmin(inside) >= 0.5 and np.nanmax(inside) <= 10.0  # device range
        lab = out.layers[box]
        assert {3, 5, 6} <= set(np.unique(lab[np.isfinite(inside)]))  # covers the DFM and some muscle
        for k in observed:
            observed[k].append(np.nanmedian(np.where(lab == k, inside, np.nan)))
        assert np.nanmedian(np.where(lab == 5, inside, np.nan)) < params.stiffness[4]  # DFM smoothed down
    med = {k: float(np.median(v)) for k, v in observed.items()}
    assert 1.0 <= med[2] <= 2.0 and 1.0 <= med[4] <= 2.0  # fat
    assert 2.2 <= med[5] <= 3.3  # DFM reads lower than its intrinsic 3-4 m/s (phantom: 3.8 -> 2.8)
    assert 1.8 <= med[6] <= 2.8  # muscle
    assert med[5] > med[6] > med[4]


def test_renderer_follows_each_planted_feature():
    base = ScanParams.typical()

    def render(**changes):
        p = base
        for feature, (layer, value) in changes.items():
            arr = getattr(p, feature).copy()
            arr[LAYERS.index(layer)] = value
            p = dataclasses.replace(p, **{feature: arr})
        return render_scan(p, STUDY["shape"], STUDY["spacing"], np.random.default_rng(5))

    ref = render()
    thick = render(thickness=("deep_fat", 9.0))
    assert (thick.layers == 4).sum() > 1.3 * (ref.layers == 4).sum()
    bright = render(echogenicity=("muscle", -11.0))
    assert bright.bmode[bright.layers == 6].mean() > ref.bmode[ref.layers == 6].mean() + 0.05
    rough = render(texture=("superficial_fat", 1.6))
    assert rough.bmode[rough.layers == 2].std() > ref.bmode[ref.layers == 2].std() + 0.01
    stiff = render(stiffness=("muscle", 3.0))
    assert np.nanmedian(stiff.swe[stiff.layers == 6]) > np.nanmedian(ref.swe[ref.layers == 6]) + 0.4


@pytest.mark.parametrize(
    ("shape", "spacing"),
    [
        ((32, 16, 16), (1.2, 2.5, 2.5)),
        ((48, 32, 32), (0.8, 1.25, 1.25)),
        ((48, 32, 32), None),
        ((20, 12, 12), (1.25, 2.0, 2.0)),
        ((64, 24, 24), (0.6, 1.0, 1.0)),
    ],
)
def test_all_six_layers_in_every_scan_even_at_extremes(shape, spacing):
    cfg = SynthConfig(shape=shape, spacing=spacing)
    typical = ScanParams.typical()
    # every thickness at its clipping bound: thickest fat and muscle, thinnest membranes
    thick = dataclasses.replace(typical, thickness=np.array([3.6, 8.0, 1.2, 12.0, 3.0, 32.0]), standoff_mm=2.0)
    thin = dataclasses.replace(typical, thickness=np.array([0.6, 1.0, 0.15, 1.5, 0.3, 10.0]), pressure=1.0)
    for params in (typical, thick, thin):
        for seed in range(2):
            out = render_scan(params, cfg.shape, cfg.voxel_mm, np.random.default_rng(seed))
            assert all((out.layers == v).any() for v in LABEL_VALUES.values()), (params, seed)
            assert (out.layers[0] == 0).all()  # coupling gel above the skin


def test_time_scan_64_cubed_under_a_second():
    assert time_scan((64, 64, 64), 0.6, repeats=3) < 1.0


# --- files -------------------------------------------------------------------------------------------------


def test_cli_writes_a_valid_cohort(tmp_path):
    out = tmp_path / "cohort"
    argv = [
        "synth",
        "--preset",
        "strong",
        "--n-subjects",
        "20",
        "--scans-per-subject",
        "4",
        "--seed",
        "1",
        "--out",
        str(out),
        "--shape",
        *map(str, SMALL["shape"]),
        "--spacing",
        *map(str, SMALL["spacing"]),
        "--preview",
        str(tmp_path / "first.png"),
    ]
    assert main(argv) == 0
    sheet = pd.read_csv(out / "cohort.tsv", sep="\t")
    assert list(sheet.columns[: len(SHEET_COLUMNS)]) == list(SHEET_COLUMNS)
    assert {"side", "level", "visit", "age", "sex", "bmi"} <= set(sheet.columns)
    assert len(sheet) == 80 and sheet.subject_id.nunique() == 20 and sheet.scan_id.is_unique
    assert sheet.groupby("subject_id").label.nunique().max() == 1 and sheet.label.sum() == 40
    assert list(sheet.scan_id) == sorted(sheet.scan_id)
    assert len(list((out / "scans").glob("*.nii.gz"))) == 240
    for row in sheet.itertuples():
        images = {k: nib.load(out / getattr(row, k)) for k in ("bmode", "swe", "layers")}
        assert not Path(row.bmode).is_absolute()
        data = {k: np.asarray(img.dataobj) for k, img in images.items()}
        for img in images.values():
            assert img.shape == SMALL["shape"] and np.allclose(img.affine, np.diag([*SMALL["spacing"], 1.0]))
        assert data["bmode"].dtype == np.float32 and 0.0 <= data["bmode"].min() and data["bmode"].max() <= 1.0
        assert data["swe"].dtype == np.float32 and np.isnan(data["swe"]).any() and np.isfinite(data["swe"]).any()
        assert data["layers"].dtype == np.uint8 and set(np.unique(data["layers"])) == set(range(7))
    features = pd.read_csv(out / "features.tsv", sep="\t")
    assert list(features.columns) == ["scan_id", "subject_id", "label", "layer", "feature", "value"]
    assert len(features) == 80 * 24 and features.groupby("scan_id").size().eq(24).all()
    assert (features.drop_duplicates("scan_id").set_index("scan_id").label == sheet.set_index("scan_id").label).all()
    truth = json.loads((out / "ground_truth.json").read_text())
    assert truth["preset"] == "strong" and truth["seed"] == 1 and truth["icc"] == 0.7
    assert len(truth["effects"]) == 3 and 0.5 < truth["oracle_auc"] <= 1.0
    assert (tmp_path / "first.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_same_seed_same_bytes_other_seed_other_data(tmp_path):
    cfg = SynthConfig(preset="realistic", n_subjects=3, scans_per_subject=2, seed=21, **SMALL)
    synthesize_cohort(cfg, tmp_path / "a")
    synthesize_cohort(cfg, tmp_path / "b")
    synthesize_cohort(dataclasses.replace(cfg, seed=22), tmp_path / "c")
    a, b, c = (_digests(tmp_path / x) for x in "abc")
    assert a == b and len(a) == 3 * 6 + 3
    same_names = set(a) & set(c)
    assert all(a[name] != c[name] for name in same_names)


def test_chunks_do_not_change_the_cohort(tmp_path):
    cfg = SynthConfig(preset="strong", n_subjects=5, scans_per_subject=2, seed=31, label_noise=0.2, **SMALL)
    synthesize_cohort(cfg, tmp_path / "one", n_chunks=1)
    parts = [synthesize_chunk(cfg, tmp_path / "three", "scans", k, 3) for k in (2, 0, 1)]
    finalize_cohort(cfg, tmp_path / "three", [p[0] for p in parts], [p[1] for p in parts])
    assert _digests(tmp_path / "one") == _digests(tmp_path / "three")


def test_preview_has_physical_aspect(tmp_path):
    out = render_scan(ScanParams.typical(), (40, 20, 10), (1.0, 2.0, 4.0), np.random.default_rng(0))
    render_preview(out.bmode, out.swe, out.layers, (1.0, 2.0, 4.0), tmp_path / "p.png", title="t")
    import matplotlib.image as mpimg

    assert mpimg.imread(tmp_path / "p.png").shape[1] > 800


@pytest.mark.parametrize(
    "argv",
    [
        ["--effect", "dfm:thickness"],
        ["--effect", "dfm:colour:1"],
        ["--preset", "strong", "--effect", "dfm:thickness:1"],
        ["--shape", "48", "32", "32", "--spacing", "0.4"],
        ["--spacing", "1", "2"],
        ["--preset", "medium"],
        ["--label-noise", "0.9"],
    ],
)
def test_cli_bad_input_exits_2_with_one_message(tmp_path, capsys, argv):
    try:
        code = main(["synth", "--out", str(tmp_path / "x"), *argv])
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2 and "error" in err and "Traceback" not in err
    assert not (tmp_path / "x").exists()


def test_installed_script_reports_bad_config_without_traceback(tmp_path):
    layer_exe = Path(sys.executable).with_name("layer")
    proc = subprocess.run(
        [str(layer_exe), "synth", "--out", str(tmp_path / "x"), "--seed", "-3"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == "layer synth: error: synthetic.seed: must be >= 0, got -3"


def test_the_synthesis_rules_pass_every_config_key():
    """workflow/rules/synth.smk lists the keys its jobs carry as params (and rerun on); it must be the library's."""
    import ast
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "workflow" / "rules" / "synth.smk").read_text()
    listed = ast.literal_eval(re.search(r"SYNTH_KEYS = (\([^)]*\))", text).group(1))
    assert tuple(listed) == SynthConfig.CONFIG_KEYS
