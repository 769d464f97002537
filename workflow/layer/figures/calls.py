"""Figures of the layer calls and of the attribution checks (sanity, faithfulness, robustness).

Kept apart from ``layer.figures.study`` (saliency, ROC, curves, overlays) so that each module stays small; the
style and the atomic save are shared.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from layer.figures.study import _save, _style
from layer.stats.calls import CALLS_COLUMNS
from layer.names import LAYERS, MODALITIES

_LAYER_LABELS = ["dermis", "superf.\nfat", "SFM", "deep\nfat", "DFM", "muscle"]


def _whole_model_channel(rows: pd.DataFrame) -> str:
    channels = rows["channel"].unique().tolist()
    return "all" if "all" in channels else channels[0]


def build_layer_calls(calls: pd.DataFrame, method: str, measure: str) -> Figure:
    """One panel per modality: each layer's label gap in the trained models (patients minus controls, logits)
    with its subject-level BCa interval; the null models' gap (a diagnostic, not a term of the test) as a
    hollow marker; driving layers red and starred."""
    missing = set(CALLS_COLUMNS) - set(calls.columns)
    if missing:
        raise ValueError(f"calls table lacks columns {sorted(missing)}")
    rows = calls[(calls["method"] == method) & (calls["measure"] == measure)]
    if rows.empty:
        raise ValueError(f"no calls for method {method!r} and measure {measure!r}")
    modalities = [m for m in MODALITIES if m in set(rows["modality"])]
    fig = Figure(figsize=(3.2 * len(modalities) + 0.6, 3.4), layout="constrained")
    axes = fig.subplots(1, len(modalities), sharey=True, squeeze=False)[0]
    x = np.arange(len(LAYERS))
    has_null = False
    for ax, modality in zip(axes, modalities):
        part = rows[rows["modality"] == modality]
        part = part[part["channel"] == _whole_model_channel(part)].set_index("layer").reindex(list(LAYERS))
        driving = part["driving"].fillna(False).astype(bool).to_numpy()
        colors = np.where(driving, "#c0392b", "#7f8c8d")
        ax.bar(x, part["estimate"], color=colors, alpha=0.85, width=0.65)
        err = np.vstack([part["estimate"] - part["ci_low"], part["ci_high"] - part["estimate"]])
        ax.errorbar(x, part["estimate"], yerr=np.abs(err), fmt="none", ecolor="black", capsize=3, lw=1)
        if part["null_mean"].notna().any():
            has_null = True
            ax.scatter(x, part["null_mean"], marker="o", facecolor="white", edgecolor="black", zorder=3, s=18)
        for i in np.flatnonzero(driving):
            ax.annotate("*", (x[i], part["ci_high"].iloc[i]), ha="center", va="bottom", fontsize=14)
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xticks(x, _LAYER_LABELS, fontsize=7)
        ax.set_title(f"{modality} (channel {part['channel'].iloc[0]})", fontsize=9)
    axes[0].set_ylabel(f"{measure}, trained models (logits)")
    handles = [
        Line2D([], [], color="#c0392b", lw=6, label="driving (Holm p <= alpha, also without the other drivers)"),
        Line2D([], [], color="#7f8c8d", lw=6, label="not driving"),
    ]
    if has_null:
        handles.append(Line2D([], [], marker="o", markerfacecolor="white", markeredgecolor="black", ls="",
                              label="null models (diagnostic)"))
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=7, frameon=False)
    fig.suptitle(f"Which layers drive the prediction ({method}, {measure})", fontsize=10)
    return fig


def plot_layer_calls(calls: pd.DataFrame, method: str, measure: str, png: str | os.PathLike[str]) -> None:
    with _style():
        _save(build_layer_calls(calls, method, measure), png)


def build_checks(sanity: pd.DataFrame, curves: pd.DataFrame, robustness: pd.DataFrame, measure: str) -> Figure:
    """One row per modality, three panels: sanity (Spearman of the layer profile vs blocks randomised),
    faithfulness (mean fall of the predicted-class logit while deleting layers in each method's order),
    robustness (largest change of each layer's share under mask perturbations)."""
    operator = curves["operator"].iloc[0] if "operator" in curves.columns and len(curves) else None
    if operator is not None:  # the first deletion operator (the config's order); the table has all
        curves = curves[curves["operator"] == operator]
    modalities = [m for m in MODALITIES if m in set(sanity["modality"]) | set(curves["modality"])]
    fig = Figure(figsize=(12, 2.9 * len(modalities) + 0.4), layout="constrained")
    axes = fig.subplots(len(modalities), 3, squeeze=False)
    methods = sorted(set(curves["method"]) - {"random", "shapley_exact"})
    colours = dict(zip(methods + ["shapley_exact"], [f"C{i}" for i in range(len(methods) + 1)]))
    for row, modality in zip(axes, modalities):
        ax_s, ax_f, ax_r = row
        for method, part in sanity[sanity["modality"] == modality].groupby("method", sort=True):
            flagged = bool(part["flagged"].iloc[0])
            ax_s.plot(part["blocks_randomised"], part["spearman"], "--" if flagged else "-", marker=".",
                      color=colours.get(method), label=f"{method}{' (flagged)' if flagged else ''}")
        ax_s.set_ylim(-1.05, 1.05)
        ax_s.set_ylabel(f"{modality}\nSpearman with trained profile")
        ax_s.legend(fontsize=6, loc="lower left")
        for method, part in curves[curves["modality"] == modality].groupby("method", sort=True):
            style = dict(ls=":", color="black") if method == "random" else dict(ls="-", color=colours.get(method))
            ax_f.plot(part["step"], part["mean_drop"], marker=".", label=method, **style)
        ax_f.set_ylabel("fall of predicted-class logit")
        ax_f.legend(fontsize=6, loc="upper left")
        part = robustness[(robustness["modality"] == modality) & (robustness["measure"] == measure)]
        spread = part.groupby(["method", "layer"])["spread"].max().unstack("layer").reindex(columns=list(LAYERS))
        x = np.arange(len(LAYERS))
        width = 0.8 / max(len(spread), 1)
        for i, (method, values) in enumerate(spread.iterrows()):
            ax_r.bar(x + i * width - 0.4 + width / 2, values.to_numpy(), width=width, color=colours.get(method),
                     label=method)
        ax_r.set_xticks(x, _LAYER_LABELS, fontsize=7)
        ax_r.set_ylabel(f"largest |change| of {measure}")
        ax_r.legend(fontsize=6)
    axes[0, 0].set_title("Sanity: cascading randomisation", fontsize=9)
    deleted_by = f" by {operator}" if operator is not None else ""
    axes[0, 1].set_title(f"Faithfulness: deleting layers{deleted_by}", fontsize=9)
    axes[0, 2].set_title("Robustness: +/-1 voxel and Dice-level mask errors", fontsize=9)
    axes[-1, 0].set_xlabel("parameter blocks re-initialised (output first)")
    axes[-1, 1].set_xlabel("layers deleted")
    return fig


def plot_checks(
    sanity: pd.DataFrame, curves: pd.DataFrame, robustness: pd.DataFrame, measure: str, png: str | os.PathLike[str]
) -> None:
    with _style():
        _save(build_checks(sanity, curves, robustness, measure), png)


def build_recovery(recovery: pd.DataFrame) -> Figure:
    """Heatmaps of scenario x (modality / method), side by side: top-1 accuracy of the driver, the
    false-positive rate, and how far the model is below the image oracle (oracle AUC minus model AUC, where
    the table has the oracle); each cell annotated (the mean over seeds), empty where undefined."""
    table = recovery.assign(column=recovery["modality"] + " / " + recovery["method"])
    if "image_oracle_auc" in table:
        table["oracle_gap"] = table["image_oracle_auc"] - table["model_auc"]
    scenarios = list(dict.fromkeys(table["scenario"]))
    columns = sorted(table["column"].unique(), key=lambda c: (MODALITIES.index(c.split(" / ")[0]), c))
    panels = [
        ("top1_accuracy", "top-1 accuracy of the driver", "Greens", 1.0),
        ("false_positive_rate", "false-positive rate", "Reds", 1.0),
        ("oracle_gap", "image oracle AUC - model AUC", "Purples", 0.5),
    ]
    panels = [p for p in panels if p[0] in table]
    fig = Figure(figsize=(2.0 + len(panels) * (0.9 + 0.75 * len(columns)), 2.0 + 0.28 * len(scenarios)),
                 layout="constrained")  # fmt: skip
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for k, (ax, (metric, title, cmap, vmax)) in enumerate(zip(axes, panels)):
        grid = table.pivot_table(index="scenario", columns="column", values=metric, aggfunc="mean", dropna=False)
        grid = grid.reindex(index=scenarios, columns=columns)
        ax.imshow(grid.to_numpy(dtype=float), cmap=cmap, vmin=0, vmax=vmax, aspect="auto")
        for (i, j), value in np.ndenumerate(grid.to_numpy(dtype=float)):
            if np.isfinite(value):
                ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=6,
                        color="white" if value > 0.6 * vmax else "black")
        ax.set_xticks(range(len(columns)), columns, rotation=40, ha="right", fontsize=7)
        ax.set_yticks(range(len(scenarios)), scenarios if k == 0 else [""] * len(scenarios), fontsize=7)
        ax.set_title(title, fontsize=9)
        ax.grid(False)
    return fig


def build_power(power: pd.DataFrame, target: float = 0.8) -> Figure:
    """Recall of the planted drivers against the number of subjects (log axis), one panel per scenario
    family, one line per modality / method; the dashed line is ``target`` (the subjects needed for it are
    ``power_needed.tsv``). A figure with a note when no family was run at two sizes."""
    families = list(dict.fromkeys(power["family"]))
    fig = Figure(figsize=(1.0 + 3.6 * max(1, len(families)), 3.2), layout="constrained")
    axes = fig.subplots(1, max(1, len(families)), squeeze=False)[0]
    if not families:
        axes[0].text(0.5, 0.5, "no scenario family was run at two cohort sizes", ha="center", va="center")
        axes[0].set_axis_off()
        return fig
    for ax, family in zip(axes, families):
        part = power[power["family"] == family]
        for (modality, method), line in part.groupby(["modality", "method"], sort=False):
            ax.plot(line["n_subjects"], line["recall"], marker="o", label=f"{modality} / {method}")
        ax.axhline(target, color="0.4", linestyle="--", linewidth=0.8)
        ax.set_xscale("log")
        ax.minorticks_off()
        ax.set_xticks(sorted(part["n_subjects"].unique()), [str(n) for n in sorted(part["n_subjects"].unique())])
        ax.set_ylim(-0.05, 1.05)
        ax.set_xlabel("subjects")
        ax.set_ylabel("recall of the planted drivers")
        ax.set_title(family, fontsize=9)
        ax.legend(fontsize=6)
    return fig


def plot_power(power: pd.DataFrame, png: str | os.PathLike[str], target: float = 0.8) -> None:
    with _style():
        _save(build_power(power, target), png)


def plot_recovery(recovery: pd.DataFrame, png: str | os.PathLike[str]) -> None:
    with _style():
        _save(build_recovery(recovery), png)
