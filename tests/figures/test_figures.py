"""Figures: each one is drawn from small synthetic tables and arrays, written as a real PNG, and the
saliency figure shows the six layers in anatomical order."""

from __future__ import annotations

import matplotlib as mpl
import numpy as np
import pandas as pd
import pytest

from layer.figures import study as figures
from layer.names import CHANNELS, LAYERS, MODALITIES
from layer.stats.tables import NON_MUSCLE

METHODS = ("gradcam", "integrated_gradients")
VOLUME_SHARE = dict(zip(LAYERS, (0.10, 0.22, 0.03, 0.19, 0.03, 0.43)))
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def fake_saliency(seed: int = 0) -> pd.DataFrame:
    """Saliency table as the statistics step writes it: Grad-CAM has channel ``all``; IG of the fused
    model has its two channels only (so that panel draws channels side by side)."""
    rng = np.random.default_rng(seed)
    rows = []
    for modality in MODALITIES:
        for method in METHODS:
            channels = ["all"] if method == "gradcam" else list(CHANNELS[modality])
            for channel in channels:
                share = rng.dirichlet(np.full(len(LAYERS), 3.0))
                per_layer = dict(zip(LAYERS, share)) | {"non_muscle": 1.0 - share[-1]}
                volume = VOLUME_SHARE | {"non_muscle": 1.0 - VOLUME_SHARE["muscle"]}
                for layer, value in per_layer.items():
                    for measure, est in (
                        ("mass_share_abs", value),
                        ("volume_share", volume[layer]),
                        ("gain_abs", value / volume[layer]),
                    ):
                        half = 0.15 * est + 0.01
                        rows.append(
                            {
                                "modality": modality,
                                "method": method,
                                "channel": channel,
                                "layer": layer,
                                "measure": measure,
                                "estimate": est,
                                "ci_low": max(0.0, est - half),
                                "ci_high": est + half,
                                "n_subjects": 40,
                                "n_scans": 160,
                            }
                        )
    return pd.DataFrame(rows)


def fake_oof(seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    n = 160
    subject = np.repeat(np.arange(40), 4)
    label = (subject % 2).astype(int)
    oof, perf = [], []
    for strength, modality in zip((1.0, 0.6, 1.4), MODALITIES):
        logit = strength * (2 * label - 1) + rng.normal(size=n)
        prob = 1 / (1 + np.exp(-logit))
        oof.append(
            pd.DataFrame(
                {
                    "scan_id": [f"s{i:03d}" for i in range(n)],
                    "subject_id": subject,
                    "modality": modality,
                    "fold": subject % 5,
                    "label": label,
                    "prob": prob,
                }
            )
        )
        for metric, est in (
            ("auc", 0.7 + 0.05 * strength),
            ("balanced_accuracy", 0.7),
            ("sensitivity", 0.7),
            ("specificity", 0.7),
        ):
            perf.append(
                {
                    "modality": modality,
                    "metric": metric,
                    "estimate": est,
                    "ci_low": est - 0.07,
                    "ci_high": min(1.0, est + 0.06),
                }
            )
    return pd.concat(oof, ignore_index=True), pd.DataFrame(perf)


def fake_curves(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for modality in MODALITIES:
        for fold in range(5):
            n_epochs = int(rng.integers(12, 30))
            for epoch in range(n_epochs):
                rows.append(
                    {
                        "modality": modality,
                        "fold": fold,
                        "epoch": epoch,
                        "train_loss": 0.7 * np.exp(-epoch / 10) + 0.1 + 0.02 * rng.random(),
                        "val_loss": 0.6 + 0.1 * np.sin(epoch / 4 + fold) + 0.05 * rng.random(),
                        "val_auc": min(1.0, 0.5 + 0.3 * (1 - np.exp(-epoch / 6)) + 0.06 * rng.normal()),
                    }
                )
    return pd.DataFrame(rows)


def fake_examples(seed: int = 0) -> list[dict]:
    """A layered phantom (48 x 32 x 8 voxels, 0.8 x 1.25 x 1.25 mm): six wavy layers below gel."""
    rng = np.random.default_rng(seed)
    depth, lateral, elevation = 48, 32, 8
    z = np.arange(depth)[:, None, None]
    wave = 1.5 * np.sin(np.arange(lateral) / 5.0)[None, :, None]
    bounds = np.array([4, 8, 16, 18, 25, 27, 44])  # gel | dermis | sfat | sfm | dfat | dfm | muscle | shadow
    layers = np.zeros((depth, lateral, elevation), dtype=np.int16)
    for value in range(1, 7):
        inside = (z >= bounds[value - 1] + wave) & (z < bounds[value] + wave)
        layers[np.broadcast_to(inside, layers.shape)] = value
    echo = np.array([0.05, 0.7, 0.25, 0.9, 0.3, 0.9, 0.45])  # gel, dermis, fat, membrane, fat, membrane, muscle
    bmode = echo[layers] * rng.rayleigh(0.8, layers.shape)  # speckle
    examples = []
    for modality in MODALITIES:
        for method in METHODS:
            blob = np.exp(-((z - 26.0) ** 2) / 30.0) * np.ones_like(bmode)
            if method == "gradcam":
                attribution = blob + 0.05 * rng.random(bmode.shape)
                channel = "all"
            else:
                attribution = blob * rng.normal(0.2, 1.0, bmode.shape)
                channel = CHANNELS[modality][0]
            examples.append(
                {
                    "scan_id": f"S{len(examples):02d}_1",
                    "modality": modality,
                    "method": method,
                    "channel": channel,
                    "bmode": bmode.astype(np.float32),
                    "layers": layers,
                    "attribution": attribution.astype(np.float32),
                    "spacing": (0.8, 1.25, 1.25),
                }
            )
    return examples


def assert_png(path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > 10_000
    assert not list(path.parent.glob(f".{path.name}.*")), "temporary file left behind"


def test_layer_saliency_figure(tmp_path):
    table = fake_saliency()
    fig = figures._build_layer_saliency(table, "mass_share_abs")
    labelled = [[t.get_text() for t in ax.get_xticklabels()] for ax in fig.get_axes()]
    assert [list(LAYERS)] * len(MODALITIES) == [x for x in labelled if x and x[0] == LAYERS[0]]
    assert [NON_MUSCLE, "muscle"] in labelled
    legend = [t.get_text() for leg in fig.legends for t in leg.get_texts()]
    assert "volume share (chance)" in legend
    assert {"channel bmode (plain)", "channel swe (hatched)"} <= set(legend)
    png = tmp_path / "saliency.png"
    figures.plot_layer_saliency(table, "mass_share_abs", png)
    assert_png(png)


def test_layer_saliency_gain_and_unknown_measure(tmp_path):
    table = fake_saliency()
    figures.plot_layer_saliency(table, "gain_abs", tmp_path / "gain.png")
    assert_png(tmp_path / "gain.png")
    with pytest.raises(ValueError, match="no rows with measure"):
        figures.plot_layer_saliency(table, "density_abs", tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_roc_figure(tmp_path):
    oof, perf = fake_oof()
    fig = figures._build_roc(oof, perf, oracle_auc=0.78)
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "oracle AUC from true features: 0.78" in legend
    assert any(t.startswith("fused: AUC 0.77 [0.70, 0.83]") for t in legend)
    figures.plot_roc(oof, perf, tmp_path / "roc.png", oracle_auc=0.78)
    assert_png(tmp_path / "roc.png")


def test_training_curves_figure(tmp_path):
    figures.plot_training_curves(fake_curves(), tmp_path / "curves.png")
    assert_png(tmp_path / "curves.png")


def test_overlays_figure(tmp_path):
    examples = fake_examples()
    fig = figures._build_overlays(examples)
    titles = {ax.get_title() for ax in fig.get_axes()}
    assert "fused / integrated_gradients / S05_1" in titles
    figures.plot_overlays(examples, tmp_path / "overlays.png")
    assert_png(tmp_path / "overlays.png")


def test_figures_leave_global_style_alone(tmp_path):
    before = dict(mpl.rcParams)
    figures.plot_layer_saliency(fake_saliency(), "mass_share_abs", tmp_path / "s.png")
    after = dict(mpl.rcParams)
    assert {k for k in before if before[k] != after[k]} == set()


def test_recovery_heatmaps_and_power_curve(tmp_path):
    from layer.figures.calls import build_power, build_recovery, plot_power, plot_recovery

    recovery = pd.DataFrame([
        {"scenario": s, "modality": m, "method": "shapley_background", "model_auc": 0.7, "image_oracle_auc": 0.85,
         "top1_accuracy": 1.0 if s != "null" else np.nan, "false_positive_rate": 0.0}
        for s in ("null", "dfm_echogenicity") for m in ("bmode", "fused")
    ])  # fmt: skip
    fig = build_recovery(recovery)
    axes = fig.get_axes()
    assert [ax.get_title() for ax in axes] == ["top-1 accuracy of the driver", "false-positive rate",
                                               "image oracle AUC - model AUC"]  # fmt: skip
    # The gap panel shows 0.85 - 0.70 in every cell; the null row has no top-1 cell.
    assert {t.get_text() for t in axes[2].texts} == {"0.15"} and len(axes[0].texts) == 2
    plot_recovery(recovery, tmp_path / "recovery.png")
    power = pd.DataFrame({"family": "realistic", "modality": "fused", "method": "m", "n_subjects": [60, 240],
                          "n_rows": 1, "recall": [0.0, 1.0], "model_auc": 0.7})  # fmt: skip
    lines = build_power(power).get_axes()[0].get_lines()
    assert list(lines[0].get_xdata()) == [60, 240] and list(lines[0].get_ydata()) == [0.0, 1.0]
    plot_power(power.iloc[0:0], tmp_path / "empty.png")
    assert (tmp_path / "empty.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
