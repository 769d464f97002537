"""Figures of the study: per-layer saliency, ROC curves, training curves and attribution overlays.

Every figure is built by a ``_build_*`` function that returns a matplotlib ``Figure`` (tests inspect it)
and written by a ``plot_*`` function as a 150-dpi PNG, atomically. Figures are made without pyplot and
styled inside ``rc_context`` with seaborn's "whitegrid"/"paper" settings, so importing or calling this
module changes no global matplotlib state and needs no display (PNG output goes through Agg).

Conventions a reader can rely on across figures: layers always appear in anatomical order (skin to
muscle, ``names.LAYERS``) and always in the colour of ``LAYER_COLOURS``; modalities always in
``MODALITY_COLOURS``; names are the study's vocabulary (``names.py``), as in every table.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence

import matplotlib as mpl
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib import patheffects
from matplotlib.colors import Normalize, TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from sklearn.metrics import roc_auc_score, roc_curve

from layer.io import atomic_path
from layer.names import CHANNELS, LAYERS, MODALITIES
from layer.stats.tables import ALL_CHANNELS, NON_MUSCLE, PERFORMANCE_COLUMNS, SALIENCY_COLUMNS

#: One colour per layer in every figure (Okabe-Ito, colour-blind safe): fascial membranes blue, fat
#: orange/yellow, dermis pink, muscle vermillion.
LAYER_COLOURS: dict[str, str] = {
    "dermis": "#CC79A7",
    "superficial_fat": "#E69F00",
    "sfm": "#56B4E9",
    "deep_fat": "#F0E442",
    "dfm": "#0072B2",
    "muscle": "#D55E00",
}
#: Colour of the composite layer ``non_muscle`` (the five layers above the muscle together).
COMPOSITE_COLOUR = "#8C8C8C"
MODALITY_COLOURS: dict[str, str] = {"bmode": "#333333", "swe": "#009E73", "fused": "#7B3294"}
#: Hatches that tell channels apart when a panel shows several channels side by side.
_CHANNEL_HATCHES: dict[str, str] = {ALL_CHANNELS: "", "bmode": "", "swe": "////"}
_OTHER_HATCH = "...."
_DPI = 150
#: Dark rim under outlines so that they stay visible over bright membranes and the overlay.
_HALO = [patheffects.withStroke(linewidth=2.6, foreground="0.1")]
#: The "chance" reference lines of the saliency figure.
_DASHED = {"color": "0.1", "linestyle": (0, (4, 2)), "linewidth": 1.3}

_QUANTITY_LABELS = {
    "mass_share": ("mass share", "fraction of the six layers' total"),
    "gain": ("gain", "mass share / volume share"),
    "density": ("density", "attribution per voxel, a.u."),
    "mass": ("mass", "summed attribution, a.u."),
}
_PART_LABELS = {"abs": "|attribution|", "pos": "positive attribution"}


@contextlib.contextmanager
def _style() -> Iterator[None]:
    """seaborn ``set_theme(style="whitegrid", context="paper")``, applied only inside the block."""
    rc = {**sns.axes_style("whitegrid"), **sns.plotting_context("paper")}
    with mpl.rc_context(rc):
        yield


def _save(fig: Figure, png: str | os.PathLike[str]) -> None:
    """Write ``fig`` as PNG atomically (in the same style: some settings are read at draw time), release it."""
    with _style(), atomic_path(png) as tmp:
        fig.savefig(tmp, format="png", dpi=_DPI)
    fig.clear()


def _ordered(values: Sequence[object], order: Sequence[str]) -> list[str]:
    """Distinct ``values`` in ``order`` first, then any others sorted."""
    present = {str(v) for v in values}
    return [v for v in order if v in present] + sorted(present - set(order))


def measure_label(measure: str) -> str:
    """Axis label with unit of a measure name such as ``mass_share_abs`` (see ``aggregate.py``)."""
    if measure == "volume_share":
        return "volume share\n(fraction of the six layers' voxels)"
    quantity, _, part = measure.rpartition("_")
    if quantity in _QUANTITY_LABELS and part in _PART_LABELS:
        name, unit = _QUANTITY_LABELS[quantity]
        return f"{name} of {_PART_LABELS[part]}\n({unit})"
    return measure.replace("_", " ")


def _require(table: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"{what} table lacks columns {missing}")


def _percent(level: float) -> str:
    """Confidence level as text: 0.95 -> "95 %"."""
    return f"{100 * level:g} %"


def _draw_ci(ax, x: np.ndarray, low: np.ndarray, high: np.ndarray, cap: float) -> None:
    """Vertical CI bars with caps (drawn from the bounds, so an estimate outside its CI is shown as is)."""
    ok = np.isfinite(low) & np.isfinite(high)
    x, low, high = x[ok], low[ok], high[ok]
    kw = {"colors": "black", "linewidth": 1.0, "zorder": 4}
    ax.vlines(x, low, high, **kw)
    ax.hlines(np.r_[low, high], np.r_[x, x] - cap, np.r_[x, x] + cap, **kw)


# --- per-layer saliency -------------------------------------------------------------------------------


def _panel_channels(rows: pd.DataFrame, modality: str) -> list[str]:
    """Channel ``all`` if present (Grad-CAM, or the channel sum of the fused model), else each channel."""
    present = rows["channel"].astype(str).unique()
    if ALL_CHANNELS in present:
        return [ALL_CHANNELS]
    return _ordered(present, CHANNELS.get(modality, ()))


def _bars(
    ax,
    rows: pd.DataFrame,
    layers: Sequence[str],
    channels: Sequence[str],
    colours: Sequence[str],
    references: np.ndarray | None,
) -> list:
    """Bars of ``estimate`` per layer (x = 0..n-1) and channel, with CIs.

    With ``references`` (one value per layer, NaN for none) each bar also gets its value written above its
    CI; returned as ``(annotation, reference)`` pairs for :func:`_lift_labels` once the y range is final.
    """
    labels = []
    width = 0.72 / len(channels)
    for k, channel in enumerate(channels):
        sel = rows[rows["channel"].astype(str) == channel].set_index("layer").reindex(list(layers))
        x = np.arange(len(layers)) + (k - (len(channels) - 1) / 2) * width
        est = sel["estimate"].to_numpy(float)
        ax.bar(
            x,
            np.nan_to_num(est),
            width=width * 0.92,
            color=colours,
            edgecolor="0.25",
            linewidth=0.6,
            hatch=_CHANNEL_HATCHES.get(channel, _OTHER_HATCH) if len(channels) > 1 else "",
            zorder=2,
        )
        high = sel["ci_high"].to_numpy(float)
        _draw_ci(ax, x, sel["ci_low"].to_numpy(float), high, cap=width * 0.18)
        if references is not None:
            for xi, e, h, f in zip(x, est, high, references):
                if np.isfinite(e):
                    annotation = ax.annotate(
                        f"{e:.2f}",
                        (xi, np.nanmax([e, h])),
                        xytext=(0, 2),
                        textcoords="offset points",
                        ha="center",
                        va="bottom",
                        fontsize=6.5,
                        color="0.2",
                        zorder=7,
                        bbox={"boxstyle": "square,pad=0.1", "facecolor": "white", "edgecolor": "none", "alpha": 0.8},
                    )
                    labels.append((annotation, f))
    return labels


def _lift_labels(labels: list) -> None:
    """Move a value label above its reference mark where the mark would run through the label."""
    for annotation, reference in labels:
        low, high = annotation.axes.get_ylim()
        x, y = annotation.xy
        if np.isfinite(reference) and -0.01 <= (reference - y) / (high - low) <= 0.065:
            annotation.xy = (x, reference)


def _reference(ax, ref: pd.Series, layers: Sequence[str]) -> None:
    """Dashed segment per layer at its reference value (volume share)."""
    values = ref.reindex(list(layers)).to_numpy(float)
    x = np.arange(len(layers))
    ok = np.isfinite(values)
    ax.hlines(
        values[ok],
        x[ok] - 0.45,
        x[ok] + 0.45,
        colors=_DASHED["color"],
        linestyles=_DASHED["linestyle"],
        linewidth=_DASHED["linewidth"],
        zorder=6,
    )


def _volume_shares(volume: pd.DataFrame, modality: str, method: str) -> pd.Series:
    """Volume share estimate per layer of one panel (a label-map quantity: any channel gives it)."""
    sel = volume[(volume["modality"] == modality) & (volume["method"] == method)]
    if sel.empty:
        sel = volume[volume["modality"] == modality]
    return sel.drop_duplicates("layer").set_index("layer")["estimate"]


def _reference_kind(measure: str, volume: pd.DataFrame) -> str | None:
    """What "chance" is for a measure: each layer's volume share (shares), 1 (gains), or nothing."""
    if measure.startswith("mass_share") and not volume.empty:
        return "volume"
    return "gain" if measure.startswith("gain") else None


def _draw_panel(
    ax,
    rows: pd.DataFrame,
    layers: Sequence[str],
    channels: Sequence[str],
    colours: Sequence[str],
    reference: str | None,
    shares: pd.Series,
) -> list:
    """One panel: bars with CIs, their values (one channel only) and the chance reference.

    Returns the value labels (see :func:`_bars`).
    """
    if reference == "volume":
        marks = shares.reindex(list(layers)).to_numpy(float)
    else:
        marks = np.full(len(layers), 1.0 if reference == "gain" else np.nan)
    labels = _bars(ax, rows, layers, channels, colours, references=marks if len(channels) == 1 else None)
    if reference == "volume":
        _reference(ax, shares, layers)
    elif reference == "gain":
        ax.axhline(1.0, **_DASHED, zorder=6)
    ax.grid(axis="x", visible=False)
    ax.set_xlim(-0.6, len(layers) - 0.4)
    return labels


def _share_y(axes: Sequence, rows: pd.DataFrame, reference: str | None, volume: pd.DataFrame) -> None:
    """One y range for ``axes`` that holds every estimate, CI and reference of ``rows``' layers."""
    values = rows[["estimate", "ci_low", "ci_high"]].to_numpy(float)
    if reference == "volume":
        values = np.r_[values.ravel(), volume.loc[volume["layer"].isin(rows["layer"]), "estimate"].to_numpy(float)]
    elif reference == "gain":
        values = np.r_[values.ravel(), 1.0]
    finite = values[np.isfinite(values)]
    bottom = min(0.0, finite.min()) if finite.size else 0.0
    top = finite.max() * 1.15 if finite.size and finite.max() > 0 else 1.0
    for a in axes[1:]:
        a.sharey(axes[0])
    axes[0].set_ylim(bottom, top)


def _build_layer_saliency(saliency: pd.DataFrame, measure: str, confidence_level: float = 0.95) -> Figure:
    """Grid of per-layer saliency: columns = modalities, rows = attribution methods.

    Each modality is a subfigure: a main panel per method with the six layers and, if the table has
    ``non_muscle`` rows, a narrow panel "non_muscle vs muscle" with its own y range (the composite share is
    several times any single layer's). Every panel has its own tick labels; panels of one kind share y
    within a row.
    """
    _require(saliency, SALIENCY_COLUMNS, "saliency")
    table = saliency[saliency["measure"] == measure]
    if table.empty:
        raise ValueError(f"no rows with measure {measure!r}; present: {sorted(saliency['measure'].unique())}")
    modalities = _ordered(table["modality"], MODALITIES)
    methods = _ordered(table["method"], ())
    pair = (NON_MUSCLE, "muscle")
    with_composite = bool((table["layer"] == NON_MUSCLE).any())
    volume = saliency[saliency["measure"] == "volume_share"]
    reference = _reference_kind(measure, volume)
    ncols = 2 if with_composite else 1
    shown_channels: set[str] = set()
    labels: list = []

    with _style():
        width = max(6.5, len(modalities) * (3.7 if with_composite else 2.9) + 0.6)
        fig = Figure(figsize=(width, 2.7 * len(methods) + 1.7), layout="constrained")
        subfigs = np.atleast_1d(fig.subfigures(1, len(modalities), wspace=0.03))
        grid = np.empty((len(methods), len(modalities), ncols), dtype=object)
        for c, (sf, modality) in enumerate(zip(subfigs, modalities)):
            sf.suptitle(modality, fontsize="large", fontweight="bold")
            axes = sf.subplots(
                len(methods), ncols, squeeze=False, sharex="col", gridspec_kw={"width_ratios": [6, 1.9][:ncols]}
            )
            grid[:, c, :] = axes
            for r, method in enumerate(methods):
                rows = table[(table["modality"] == modality) & (table["method"] == method)]
                if rows.empty:
                    axes[r, 0].text(
                        0.5, 0.5, "no data", transform=axes[r, 0].transAxes, ha="center", va="center", color="0.4"
                    )
                    continue
                channels = _panel_channels(rows, modality)
                shown_channels.update(channels if len(channels) > 1 else ())
                shares = _volume_shares(volume, modality, method) if reference == "volume" else pd.Series(dtype=float)
                labels += _draw_panel(
                    axes[r, 0], rows, LAYERS, channels, [LAYER_COLOURS[x] for x in LAYERS], reference, shares
                )
                shown = f"channel {channels[0]}" if len(channels) == 1 else "channels " + ", ".join(channels)
                n_subjects, n_scans = rows["n_subjects"].max(), rows["n_scans"].max()
                axes[r, 0].set_title(f"{method}\n{shown}; {n_subjects} subjects, {n_scans} scans", fontsize="small")
                if with_composite:
                    labels += _draw_panel(
                        axes[r, 1], rows, pair, channels, [COMPOSITE_COLOUR, LAYER_COLOURS["muscle"]], reference, shares
                    )
                    axes[r, 1].set_title("composite\n", fontsize="small")
            axes[-1, 0].set_xticks(range(len(LAYERS)), LAYERS)
            axes[-1, 0].set_xlabel("layer (skin \u2192 muscle)")
            if with_composite:
                axes[-1, 1].set_xticks(range(len(pair)), pair)
                for a in axes[:, 1]:
                    a.yaxis.tick_right()
            for a in axes[-1]:
                a.tick_params(axis="x", labelrotation=35)
                for label in a.get_xticklabels():
                    label.set(ha="right", rotation_mode="anchor")
        for r, method in enumerate(methods):
            rows = table[table["method"] == method]
            _share_y(list(grid[r, :, 0]), rows[rows["layer"].isin(LAYERS)], reference, volume)
            if with_composite:
                _share_y(list(grid[r, :, 1]), rows[rows["layer"].isin(pair)], reference, volume)
            for a in grid[r].flat:  # sharey hides nothing by itself; keep every panel's own tick labels
                a.tick_params(axis="y", labelsize="small")
            grid[r, 0, 0].set_ylabel(measure_label(measure))
        _lift_labels(labels)
        fig.legend(
            handles=_saliency_legend(confidence_level, reference, shown_channels, with_composite),
            loc="outside lower center",
            ncols=min(3, len(modalities) + 1),
            frameon=False,
        )
        fig.suptitle(f"Per-layer saliency: {measure_label(measure).splitlines()[0]}", fontsize="x-large")
    return fig


def _saliency_legend(confidence_level: float, reference: str | None, channels: set[str], with_composite: bool) -> list:
    """Legend entries of the saliency figure: CI, chance reference, channel hatches, composite."""
    handles = [
        Line2D(
            [],
            [],
            color="black",
            linewidth=1.0,
            marker="_",
            markersize=8,
            label=f"{_percent(confidence_level)} CI (subject-level bootstrap)",
        )
    ]
    if reference == "volume":
        handles.append(Line2D([], [], **_DASHED, label="volume share (chance)"))
    elif reference == "gain":
        handles.append(Line2D([], [], **_DASHED, label="gain 1 = in proportion to volume (chance)"))
    for channel in _ordered(channels, ("bmode", "swe")):
        hatch = _CHANNEL_HATCHES.get(channel, _OTHER_HATCH)
        handles.append(
            Patch(
                facecolor="white",
                edgecolor="0.25",
                hatch=hatch,
                label=f"channel {channel}{' (hatched)' if hatch else ' (plain)'}",
            )
        )
    if with_composite:
        handles.append(
            Patch(
                facecolor=COMPOSITE_COLOUR,
                edgecolor="0.25",
                label=f"{NON_MUSCLE}: the five layers above the muscle together",
            )
        )
    return handles


def plot_layer_saliency(
    saliency: pd.DataFrame, measure: str, png: str | os.PathLike[str], confidence_level: float = 0.95
) -> None:
    """Per-layer ``measure`` (e.g. ``mass_share_abs``) with CIs for every modality and method, as a PNG.

    Args:
        saliency: columns ``modality, method, channel, layer, measure, estimate, ci_low, ci_high,
            n_subjects, n_scans`` (layers of ``names.LAYERS`` and optionally ``non_muscle``).
        measure: the measure to show. Shares get a dashed reference at each layer's ``volume_share``
            estimate (if the table has it), gains a dashed line at 1.
        png: output path.
        confidence_level: of the CIs in the table (config ``bootstrap.confidence_level``), for the legend.
    """
    _save(_build_layer_saliency(saliency, measure, confidence_level), png)


# --- ROC -------------------------------------------------------------------------------------------------


def _build_roc(
    oof: pd.DataFrame, performance: pd.DataFrame, oracle_auc: float | None = None, confidence_level: float = 0.95
) -> Figure:
    """ROC curve of the pooled out-of-fold predictions of each modality."""
    _require(oof, ["scan_id", "subject_id", "modality", "label", "prob"], "out-of-fold")
    _require(performance, PERFORMANCE_COLUMNS, "performance")
    auc_rows = performance[performance["metric"] == "auc"].set_index("modality")
    with _style():
        fig = Figure(figsize=(5.4, 5.6), layout="constrained")
        ax = fig.add_subplot()
        ax.plot([0, 1], [0, 1], color="0.55", linestyle=":", linewidth=1.2, label="chance (AUC 0.50)")
        for modality in _ordered(oof["modality"], MODALITIES):
            sel = oof[oof["modality"] == modality]
            labels, probs = sel["label"].to_numpy(int), sel["prob"].to_numpy(float)
            if len(np.unique(labels)) < 2:
                continue
            fpr, tpr, _ = roc_curve(labels, probs)
            if modality in auc_rows.index:
                row = auc_rows.loc[modality]
                text = f"{modality}: AUC {row['estimate']:.2f} [{row['ci_low']:.2f}, {row['ci_high']:.2f}]"
            else:
                text = f"{modality}: AUC {roc_auc_score(labels, probs):.2f} (no CI)"
            ax.plot(fpr, tpr, color=MODALITY_COLOURS.get(modality), linewidth=1.8, label=text)
        if oracle_auc is not None:
            ax.plot([], [], " ", label=f"oracle AUC from true features: {oracle_auc:.2f}")
        ax.set(
            xlim=(-0.01, 1.01),
            ylim=(-0.01, 1.01),
            aspect="equal",
            xlabel="1 \u2212 specificity (false-positive rate)",
            ylabel="sensitivity (true-positive rate)",
        )
        n_scans, n_subjects = oof["scan_id"].nunique(), oof["subject_id"].nunique()
        ax.set_title(f"ROC, pooled out-of-fold predictions\n{n_scans} scans of {n_subjects} subjects", fontsize="large")
        ax.legend(
            loc="lower right",
            title=f"AUC [{_percent(confidence_level)} CI, subject bootstrap]",
            frameon=True,
            framealpha=0.95,
        )
    return fig


def plot_roc(
    oof: pd.DataFrame,
    performance: pd.DataFrame,
    png: str | os.PathLike[str],
    oracle_auc: float | None = None,
    confidence_level: float = 0.95,
) -> None:
    """ROC curves per modality from pooled out-of-fold predictions, AUC and CI from ``performance``.

    Args:
        oof: columns ``scan_id, subject_id, modality, fold, label, prob``.
        performance: columns ``modality, metric, estimate, ci_low, ci_high`` (metric ``auc`` is used).
        png: output path.
        oracle_auc: AUC of an oracle on the true (planted) features of a synthetic cohort, if known.
        confidence_level: of the CIs in the table (config ``bootstrap.confidence_level``), for the legend.
    """
    _save(_build_roc(oof, performance, oracle_auc, confidence_level), png)


# --- training curves -------------------------------------------------------------------------------------


def _rows_of_legend(rows: list[list]) -> tuple[list, int]:
    """Handles ordered so that a legend (filled column by column) shows each list on its own row."""
    ncols = max(len(r) for r in rows)
    blank = Line2D([], [], linestyle="none", label=" ")
    padded = [r + [blank] * (ncols - len(r)) for r in rows]
    return [row[c] for c in range(ncols) for row in padded], ncols


def _build_training_curves(curves: pd.DataFrame) -> Figure:
    """Loss (top) and validation AUC (bottom) per epoch; one column per modality, one line per fold."""
    _require(curves, ["modality", "fold", "epoch", "train_loss", "val_loss", "val_auc"], "training curve")
    modalities = _ordered(curves["modality"], MODALITIES)
    folds = sorted(curves["fold"].unique())
    colours = dict(zip(folds, sns.color_palette("colorblind", len(folds))))
    with _style():
        fig = Figure(figsize=(max(6.0, 3.2 * len(modalities) + 0.8), 5.6), layout="constrained")
        axes = fig.subplots(2, len(modalities), squeeze=False, sharex="col", sharey="row")
        for c, modality in enumerate(modalities):
            loss_ax, auc_ax = axes[0, c], axes[1, c]
            loss_ax.set_title(modality, fontsize="large", fontweight="bold")
            auc_ax.axhline(0.5, color="0.55", linestyle=":", linewidth=1.0)
            for fold in folds:
                sel = curves[(curves["modality"] == modality) & (curves["fold"] == fold)].sort_values("epoch")
                if sel.empty:
                    continue
                colour = colours[fold]
                epoch = sel["epoch"].to_numpy()
                loss_ax.plot(epoch, sel["train_loss"], color=colour, linewidth=1.3)
                loss_ax.plot(epoch, sel["val_loss"], color=colour, linewidth=1.3, linestyle="--")
                auc = sel["val_auc"].to_numpy(float)
                auc_ax.plot(epoch, auc, color=colour, linewidth=1.3)
                if np.isfinite(auc).any():
                    best = int(np.nanargmax(auc))  # first maximum: the epoch whose weights are kept
                    star = {"marker": "*", "color": colour, "markeredgecolor": "black", "markeredgewidth": 0.6}
                    auc_ax.plot(epoch[best], auc[best], markersize=11, zorder=5, **star)
                    loss_ax.plot(epoch[best], sel["val_loss"].to_numpy(float)[best], markersize=9, zorder=5, **star)
            auc_ax.set_xlabel("epoch")
        axes[0, 0].set_ylabel("loss\n(class-weighted binary cross-entropy)")
        axes[1, 0].set_ylabel("validation AUC")
        low = np.nanmin(curves["val_auc"].to_numpy(float)) if curves["val_auc"].notna().any() else 0.5
        axes[1, 0].set_ylim(min(0.4, low - 0.03), 1.02)
        fold_handles = [Line2D([], [], color=colours[f], linewidth=2, label=f"fold {f}") for f in folds]
        style_handles = [
            Line2D([], [], color="0.3", linewidth=1.3, label="training loss / validation AUC"),
            Line2D([], [], color="0.3", linewidth=1.3, linestyle="--", label="validation loss"),
            Line2D(
                [],
                [],
                color="0.6",
                marker="*",
                markersize=10,
                markeredgecolor="black",
                linestyle="none",
                label="best validation AUC (weights kept)",
            ),
            Line2D([], [], color="0.55", linestyle=":", label="chance AUC 0.5"),
        ]
        if len(modalities) > 1:
            handles, ncols = _rows_of_legend([fold_handles, style_handles])
        else:  # too narrow for a row of five
            handles, ncols = fold_handles + style_handles, 2
        fig.legend(handles=handles, loc="outside lower center", ncols=ncols, frameon=False)
        fig.suptitle("Training curves per cross-validation fold", fontsize="x-large")
    return fig


def plot_training_curves(curves: pd.DataFrame, png: str | os.PathLike[str]) -> None:
    """Loss and validation AUC per epoch for every modality and fold, best epoch marked, as a PNG.

    Args:
        curves: columns ``modality, fold, epoch, train_loss, val_loss, val_auc``.
        png: output path.
    """
    _save(_build_training_curves(curves), png)


# --- overlays --------------------------------------------------------------------------------------------


def _overlay_panel(fig: Figure, ax, example: dict) -> None:
    """Mid-elevation slice: B-mode in grey, attribution as a colour overlay, layer outlines."""
    bmode = np.asarray(example["bmode"], dtype=float)
    layers = np.asarray(example["layers"])
    attribution = np.asarray(example["attribution"], dtype=float)
    if attribution.ndim == 4:  # [C, D, H, W]: the channel sum, as channel "all"
        attribution = attribution.sum(axis=0)
    if not bmode.shape == layers.shape == attribution.shape or bmode.ndim != 3:
        raise ValueError(
            f"example {example.get('scan_id')}: bmode, layers and attribution must be the same 3-D "
            f"shape, got {bmode.shape}, {layers.shape}, {attribution.shape}"
        )
    d_mm, l_mm = (float(s) for s in example["spacing"][:2])
    k = bmode.shape[2] // 2
    image, labels, att = bmode[:, :, k], layers[:, :, k], attribution[:, :, k]
    depth, lateral = image.shape
    extent = (0.0, lateral * l_mm, depth * d_mm, 0.0)

    lo, hi = np.nanpercentile(image, [1, 99])
    ax.imshow(image, cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1, extent=extent, interpolation="nearest")
    finite = np.abs(attribution[np.isfinite(attribution)])
    scale = float(np.percentile(finite, 99)) if finite.size else 0.0
    scale = scale if scale > 0 else float(finite.max()) if finite.size and finite.max() > 0 else 1.0
    signed = finite.size > 0 and np.nanmin(attribution) < 0
    # Green = positive attribution in both maps; neither map uses the hues of LAYER_COLOURS' outlines.
    if signed:  # diverging, centred at 0, symmetric limits
        cmap, norm = mpl.colormaps["PRGn"], TwoSlopeNorm(0.0, -scale, scale)
    else:
        cmap, norm = mpl.colormaps["Greens"], Normalize(0.0, scale)
    rgba = cmap(norm(np.nan_to_num(att)))
    rgba[..., 3] = 0.8 * np.clip(np.abs(np.nan_to_num(att)) / scale, 0.0, 1.0)  # faint where attribution is small
    ax.imshow(rgba, extent=extent, interpolation="nearest")
    x = (np.arange(lateral) + 0.5) * l_mm
    y = (np.arange(depth) + 0.5) * d_mm
    for value, name in enumerate(LAYERS, start=1):  # skin to muscle: a shared edge shows the deeper layer
        mask = (labels == value).astype(float)
        if mask.any() and not mask.all():
            outline = ax.contour(x, y, mask, levels=[0.5], colors=[LAYER_COLOURS[name]], linewidths=1.4)
            outline.set_path_effects(_HALO)
    ax.set(xlim=extent[:2], ylim=extent[2:], aspect="equal", xlabel="lateral (mm)", ylabel="depth (mm)")
    ax.grid(False)
    ax.set_title(f"{example['modality']} / {example['method']} / {example['scan_id']}", fontsize="medium")
    cax = ax.inset_axes((1.04, 0.0, 0.05, 1.0))  # exactly as tall as the image
    bar = fig.colorbar(mpl.cm.ScalarMappable(norm=norm, cmap=cmap), cax=cax)
    bar.set_label(f"attribution (a.u.)\nchannel: {example.get('channel', 'all')}")
    bar.ax.tick_params(labelsize="small")


def _build_overlays(examples: list[dict]) -> Figure:
    """Grid of overlay panels: rows = modality, columns = method (a flowing grid if pairs repeat)."""
    if not examples:
        raise ValueError("no examples to draw")
    modalities = _ordered([e["modality"] for e in examples], MODALITIES)
    methods = _ordered([e["method"] for e in examples], ())
    keys = [(e["modality"], e["method"]) for e in examples]
    if len(set(keys)) == len(keys):
        nrows, ncols = len(modalities), len(methods)
        cells = [(modalities.index(m), methods.index(t)) for m, t in keys]
    else:
        ncols = min(3, len(examples))
        nrows = -(-len(examples) // ncols)
        cells = [divmod(i, ncols) for i in range(len(examples))]
    aspect = max(e["bmode"].shape[0] * e["spacing"][0] / (e["bmode"].shape[1] * e["spacing"][1]) for e in examples)
    panel = 3.6
    with _style():
        fig = Figure(
            figsize=(max(6.0, panel * ncols + 0.4), ((panel - 1.1) * aspect + 0.8) * nrows + 1.3), layout="constrained"
        )
        axes = fig.subplots(nrows, ncols, squeeze=False)
        used = set(cells)
        for (r, c), example in zip(cells, examples):
            _overlay_panel(fig, axes[r, c], example)
        for r in range(nrows):
            for c in range(ncols):
                if (r, c) not in used:
                    axes[r, c].set_axis_off()
        handles = [Line2D([], [], color=LAYER_COLOURS[n], linewidth=2, label=n) for n in LAYERS]
        fig.legend(
            handles=handles,
            loc="outside lower center",
            ncols=len(LAYERS) if ncols > 1 else 3,
            frameon=False,
            title="layer outlines (a line between two layers has the deeper layer's colour)",
        )
        fig.suptitle("Attribution over the mid-elevation B-mode slice", fontsize="x-large")
    return fig


def plot_overlays(examples: list[dict], png: str | os.PathLike[str]) -> None:
    """Attribution overlays on B-mode with layer outlines for each example, as a PNG.

    Args:
        examples: dicts with ``scan_id, modality, method, channel``, ``bmode``, ``layers`` (int labels 0..6)
            and ``attribution`` (3-D arrays, axes depth, lateral, elevation) and ``spacing`` (3 floats, mm).
            Signed attribution is drawn with a diverging colour map centred at 0 (limits +-99th percentile
            of |a|), non-negative attribution with a sequential one.
        png: output path.
    """
    _save(_build_overlays(examples), png)


__all__ = [
    "COMPOSITE_COLOUR",
    "LAYER_COLOURS",
    "MODALITY_COLOURS",
    "measure_label",
    "plot_layer_saliency",
    "plot_overlays",
    "plot_roc",
    "plot_training_curves",
]
