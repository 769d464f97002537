"""``layer bench``: every stage measured against its limit, in one run, written to one table.

Columns: ``stage, measure, value, unit, limit, ratio, note``. ``ratio`` is how far the bar is met,
always oriented so that ratio >= 1 means met: value / limit for "at least" bars (throughput, efficiency)
and limit / value for "at most" bars (seconds). Rows without a bar have an empty limit and ratio.

Timings are medians of ``repeats`` runs after one warm-up. Each measurement uses the project's own code
path (the training epoch of :func:`layer.nets.train.train_epoch`, :func:`layer.explain.attribute.attribute`,
:func:`layer.aggregate.aggregate_scans`, :func:`layer.stats.tables.layer_saliency_table`,
:func:`layer.synth.time_scan`), never a copy of it.
"""

from __future__ import annotations

import os
import re
import statistics
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from layer.io import save_arrays
from layer.names import LAYERS

BENCH_COLUMNS: tuple[str, ...] = ("stage", "measure", "value", "unit", "limit", "ratio", "note")


@dataclass(frozen=True)
class Row:
    """One measurement; ``at_least`` says which way the bar points."""

    stage: str
    measure: str
    value: float
    unit: str
    limit: float = float("nan")
    at_least: bool = True
    note: str = ""

    def ratio(self) -> float:
        if not np.isfinite(self.limit) or self.value == 0:
            return float("nan")
        return self.value / self.limit if self.at_least else self.limit / self.value

    def record(self) -> dict[str, object]:
        return {
            "stage": self.stage,
            "measure": self.measure,
            "value": self.value,
            "unit": self.unit,
            "limit": self.limit,
            "ratio": self.ratio(),
            "note": self.note,
        }


def median_time(fn: Callable[[], object], repeats: int) -> float:
    """Median wall seconds of ``fn`` over ``repeats`` runs after one warm-up run."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def small_cohort(root: Path, n_subjects: int, shape: tuple[int, int, int], spacing: tuple[float, ...]) -> pd.DataFrame:
    """A strong-preset synthetic cohort on disk (4 scans per subject); its sheet with absolute paths."""
    from layer.synth import SynthConfig, synthesize_cohort

    cfg = SynthConfig(preset="strong", n_subjects=n_subjects, scans_per_subject=4, shape=shape, spacing=spacing, seed=7)
    sheet = synthesize_cohort(cfg, root)
    for col in ("bmode", "swe", "layers"):
        sheet[col] = [str(root / p) for p in sheet[col]]
    return sheet


def bench_training(sheet: pd.DataFrame, batch_size: int, repeats: int) -> list[Row]:
    """Training throughput through the real data path vs from tensors already in memory."""
    from monai.data import DataLoader

    from layer.nets import data
    from layer.nets.model import build_model
    from layer.nets.train import train_epoch

    items = data.make_items(sheet)
    pre, aug = data.preprocessing("fused", 1.0, 5.0), data.augmentation()
    dataset = data.cached_dataset(items, pre, aug)
    images = data.stack(data.cached_dataset(items, pre))
    labels = torch.as_tensor(data.labels_of(items), dtype=torch.float32)
    in_memory = [
        {"image": images[i : i + batch_size], "label": labels[i : i + batch_size]}
        for i in range(0, len(images), batch_size)
    ]
    torch.manual_seed(0)
    model = build_model("resnet", in_channels=2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    device = torch.device("cpu")

    def loop() -> None:
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=0)
        train_epoch(model, loader, optimizer, loss_fn, scaler, device, False)

    def compute() -> None:
        train_epoch(model, in_memory, optimizer, loss_fn, scaler, device, False)

    n = len(items)
    real = n / median_time(loop, repeats)
    pure = n / median_time(compute, repeats)
    shape = "x".join(map(str, images.shape[2:]))
    return [
        Row("training", f"train_loop ({shape}, batch {batch_size})", real, "volumes/s"),
        Row("training", "same model from memory (pure compute)", pure, "volumes/s"),
        Row(
            "training",
            "data path efficiency (loop / compute)",
            real / pure,
            "ratio",
            0.90,
            note=""
            if real / pure >= 0.90
            else f"flips and collation run in the training process (num_workers=0): "
            f"{1000 * (1 / real - 1 / pure):.1f} ms per volume",
        ),
    ]


def bench_attribution(sheet: pd.DataFrame, n_volumes: int, ig_steps: int, repeats: int) -> list[Row]:
    """Volumes/s of each method and its cost in forward-pass equivalents (batched forwards)."""
    from layer.nets import data
    from layer.explain.attribute import METHODS, AttributionSettings, attribute
    from layer.nets.model import GRADCAM_LAYERS, build_model
    from layer.nets.train import predict

    items = data.make_items(sheet)[:n_volumes]
    dataset = data.cached_dataset(items, data.preprocessing("fused", 1.0, 5.0, with_layers=True))
    images = data.stack(dataset)
    layers = np.stack([np.asarray(d["layers"][0]) for d in dataset]).astype(np.int16)
    settings = AttributionSettings.defaults(ig_steps=ig_steps, batch_size=16)
    torch.manual_seed(0)
    model = build_model("resnet", in_channels=2).eval()
    device = torch.device("cpu")
    forward = median_time(lambda: predict(model, images, device, 16), repeats) / len(images)
    rows = [Row("attribution", "forward pass", 1.0 / forward, "volumes/s")]
    for method in METHODS + ("shapley_background",):
        seconds = median_time(
            lambda m=method: attribute(
                model, images, layers, m, ("bmode", "swe"), settings, images[:4], GRADCAM_LAYERS["resnet"]
            ),
            repeats,
        ) / len(images)
        rows.append(Row("attribution", f"{method}", 1.0 / seconds, "volumes/s"))
        rows.append(Row("attribution", f"{method} cost", seconds / forward, "forward-pass equivalents"))
    return rows


def bench_aggregation(n_scans: int, shape: tuple[int, int, int], repeats: int) -> list[Row]:
    """GB/s of attribution volume reduced to layer scores, against a memory copy of the same array."""
    from layer.aggregate import aggregate_scans

    rng = np.random.default_rng(0)
    maps = rng.standard_normal((n_scans, 2, *shape), dtype=np.float32)
    layers = np.repeat(np.linspace(0, len(LAYERS) + 0.99, shape[0]).astype(np.uint8)[None, :, None, None], n_scans, 0)
    layers = np.broadcast_to(layers, (n_scans, *shape)).copy()
    ids = [f"s{i}" for i in range(n_scans)]
    gb = maps.nbytes / 1e9
    agg = gb / median_time(lambda: aggregate_scans(maps, layers, ids, ("bmode", "swe")), repeats)
    copy = gb / median_time(maps.copy, repeats)
    note = ""
    if agg / copy < 0.25:
        note = "below the bar: the numba kernel is memory-bound; check the machine's load (copy speed varies with it)"
    return [
        Row("aggregation", "layer reduction", agg, "GB/s"),
        Row("aggregation", "memory copy of the same array", copy, "GB/s"),
        Row("aggregation", "reduction / copy", agg / copy, "ratio", 0.25, note=note),
    ]


def default_study_table(n_subjects: int = 100, scans_per_subject: int = 4, n_folds: int = 5) -> pd.DataFrame:
    """A long aggregation table the size of the default study (3 modalities x 2 methods)."""
    from layer.aggregate import aggregate_scans

    rng = np.random.default_rng(1)
    n = n_subjects * scans_per_subject
    ids = [f"s{i:04d}" for i in range(n)]
    shape = (12, 4, 4)
    layers = np.broadcast_to(np.repeat(np.arange(1, 7), 2).astype(np.uint8)[None, :, None, None], (n, *shape)).copy()
    tables = []
    for modality, channels in (("bmode", ("bmode",)), ("swe", ("swe",)), ("fused", ("bmode", "swe"))):
        for method, chans in (("gradcam", ("all",)), ("integrated_gradients", channels)):
            maps = rng.standard_normal((n, len(chans), *shape)).astype(np.float32)
            table = aggregate_scans(maps, layers, ids, chans)
            table.insert(1, "subject_id", table["scan_id"].map(lambda s: f"sub{int(s[1:]) // scans_per_subject}"))
            tables.append(table.assign(modality=modality, method=method))
    return pd.concat(tables, ignore_index=True)


def bench_bootstrap(n_resamples: int, repeats: int) -> list[Row]:
    """Subject-level BCa for every layer x measure x modality x method of the default study."""
    from layer.stats.tables import layer_saliency_table

    agg = default_study_table()
    seconds = median_time(lambda: layer_saliency_table(agg, n_resamples, 0.95, 0), repeats)
    return [Row("bootstrap", f"{n_resamples} BCa resamples, default study", seconds, "s", 10.0, at_least=False)]


def bench_synthesis(repeats: int) -> list[Row]:
    """Seconds per 64^3 scan (B-mode, SWE, labels) on one core."""
    from layer.synth import time_scan

    previous = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(previous)})
    try:
        seconds = time_scan((64, 64, 64), (0.6, 0.6, 0.6), repeats=repeats)
    finally:
        os.sched_setaffinity(0, previous)
    return [Row("synthesis", "one 64^3 scan, one core", seconds, "s", 1.0, at_least=False)]


def _run_stage(stage: str, sheet_path: str, maps_path: str) -> tuple[float, float]:
    """Run one stage; (seconds, peak MB allocated during it, numpy buffers included, via tracemalloc)."""
    from layer import aggregate
    from layer.stats import tables as stats
    from layer.cohort import validate
    from layer.io import read_tsv

    agg = None
    if stage == "statistics":
        agg = aggregate.aggregate_job(maps_path, read_tsv(sheet_path)).assign(modality="fused", method="ig")
    tracemalloc.start()
    start = time.perf_counter()
    if stage == "validation":
        validate.validate_cohort(sheet_path, validate.Rules(n_folds=2))
    elif stage == "aggregation":
        aggregate.aggregate_job(maps_path, read_tsv(sheet_path))
    else:
        stats.layer_saliency_table(agg, 1000, 0.95, 0)
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return seconds, peak


def bench_scaling(root: Path, sizes: tuple[int, int]) -> list[Row]:
    """Peak memory and time of validation, aggregation and statistics at two cohort sizes (small volumes).

    Volumes are streamed, so memory should grow only with the tables: the note compares the growth of
    the peak with the growth of the number of scans.
    """
    measured: dict[tuple[str, int], tuple[float, float]] = {}
    for n_scans in sizes:
        folder = root / f"n{n_scans}"
        sheet = small_cohort(folder, n_scans // 4, (17, 8, 8), (1.5, 2.5, 2.5))
        sheet_path = folder / "sheet_abs.tsv"
        sheet.to_csv(sheet_path, sep="\t", index=False)
        maps = np.random.default_rng(0).standard_normal((len(sheet), 2, 17, 8, 8)).astype(np.float32)
        maps_path = folder / "maps.npz"
        save_arrays(maps_path, maps=maps, scan_ids=np.asarray(sheet["scan_id"].astype(str)), channels=np.asarray(("bmode", "swe")))
        for stage in ("validation", "aggregation", "statistics"):
            measured[(stage, n_scans)] = _run_stage(stage, str(sheet_path), str(maps_path))
    rows = []
    small, large = sizes
    for stage in ("validation", "aggregation", "statistics"):
        for n_scans in sizes:
            seconds, mb = measured[(stage, n_scans)]
            rows.append(Row("scaling", f"{stage}, {n_scans} scans: peak memory", mb, "MB"))
            rows.append(Row("scaling", f"{stage}, {n_scans} scans: time", seconds, "s"))
        growth = measured[(stage, large)][0] / max(measured[(stage, small)][0], 1e-9) / (large / small)
        rows.append(
            Row(
                "scaling",
                f"{stage}: time growth / linear",
                growth,
                "ratio",
                1.5,
                at_least=False,
                note="" if growth <= 1.5 else "super-linear time growth",
            )
        )
    return rows


_STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]")
#: Stages of the study in dependency order; the critical path takes the slowest job of each.
CHAIN: tuple[str, ...] = ("synth", "cohort", "train", "attribute", "aggregate", "stats", "figures")


#: The library a job of each stage imports before it computes (its script's heaviest import).
STARTUP_IMPORTS: dict[str, str] = {"train": "layer.nets.train", "attribute": "layer.explain.attribute"}


def import_seconds(module: str, repeats: int) -> float:
    """Median wall time of a fresh interpreter that imports ``module`` and exits: a job's start-up before it
    computes (torch, MONAI, captum load in every process; measured 6-9 s under load on 2 cores)."""
    import subprocess
    import sys

    def run() -> None:
        subprocess.run([sys.executable, "-c", f"import {module}"], check=True, capture_output=True)

    return median_time(run, repeats)


def bench_startup(repeats: int) -> list[Row]:
    """Start-up seconds of each stage's jobs (:data:`STARTUP_IMPORTS`)."""
    return [
        Row("startup", f"{stage} job: import {module}", import_seconds(module, repeats), "s")
        for stage, module in STARTUP_IMPORTS.items()
    ]


def stage_seconds(benchmarks: Path) -> dict[str, list[float]]:
    """Wall seconds of every job under a study's ``benchmarks/`` folder, by stage (its first sub-folder)."""
    per_stage: dict[str, list[float]] = {}
    for path in sorted(benchmarks.rglob("*.tsv")):
        stage = path.relative_to(benchmarks).parts[0]
        per_stage.setdefault(stage, []).append(float(pd.read_csv(path, sep="\t")["s"].iloc[0]))
    return per_stage


def bench_grid(validation: Path, startup: dict[str, float]) -> list[Row]:
    """The recovery grid's cost from a finished run's per-study benchmark files
    (``validation/{scenario}/seed{r}/benchmarks``): job-seconds per study (median and largest, the cost of
    one scenario), the whole grid's job-seconds, and the share of them its jobs spent starting up (jobs of
    each :data:`STARTUP_IMPORTS` stage x that stage's start-up seconds)."""
    studies = {p.parent.relative_to(validation).as_posix(): stage_seconds(p)
               for p in sorted(validation.glob("*/seed*/benchmarks"))}  # fmt: skip
    if not studies:
        return [Row("grid", "no grid benchmark files", float("nan"), "", note=f"nothing under {validation}")]
    cost = {name: sum(sum(v) for v in stages.values()) for name, stages in studies.items()}
    total = sum(cost.values())
    starting = sum(len(stages.get(stage, [])) * seconds for stages in studies.values() for stage, seconds in startup.items())
    largest = max(cost, key=cost.get)
    return [
        Row("grid", f"job-seconds per study, median of {len(cost)}", float(np.median(list(cost.values()))), "s"),
        Row("grid", "job-seconds per study, largest", cost[largest], "s", note=largest),
        Row("grid", "job-seconds, whole grid", total, "s"),
        Row("grid", "start-up share of the grid's job-seconds", starting / max(total, 1e-9), "ratio"),
    ]


def bench_end_to_end(results: Path, cores: int, startup: dict[str, float] | None = None) -> list[Row]:
    """Per-stage job time, wall time, critical path and core use of a finished run's benchmark files, and
    with ``startup`` (seconds per job of a stage, :func:`bench_startup`) the share of each stage's time that
    its jobs spent starting up."""
    rows = []
    per_stage = stage_seconds(results / "benchmarks")
    if not per_stage:
        return [Row("end_to_end", "no benchmark files", float("nan"), "", note=f"nothing under {results}/benchmarks")]
    for stage in CHAIN:
        if stage in per_stage:
            rows.append(Row("end_to_end", f"{stage}: {len(per_stage[stage])} jobs", sum(per_stage[stage]), "s"))
            if startup and stage in startup:
                share = len(per_stage[stage]) * startup[stage] / max(sum(per_stage[stage]), 1e-9)
                rows.append(Row("end_to_end", f"{stage}: start-up share", share, "ratio"))
    total = sum(sum(v) for v in per_stage.values())
    critical = sum(max(per_stage[s]) for s in CHAIN if s in per_stage)
    rows.append(Row("end_to_end", "all jobs, summed", total, "s"))
    rows.append(Row("end_to_end", "critical path (slowest job of each stage)", critical, "s"))
    logs = sorted((results.parent / ".snakemake" / "log").glob("*.snakemake.log"))
    if logs:
        stamps = [m.group(1) for line in logs[-1].read_text().splitlines() if (m := _STAMP.match(line))]
        if len(stamps) >= 2:
            fmt = "%a %b %d %H:%M:%S %Y"
            wall = (pd.to_datetime(stamps[-1], format=fmt) - pd.to_datetime(stamps[0], format=fmt)).total_seconds()
            rows.append(Row("end_to_end", "wall time of the last run", wall, "s", 900.0, at_least=False))
            rows.append(Row("end_to_end", f"use of --cores {cores}", total / max(wall, 1e-9) / cores, "ratio"))
    return rows


def run_all(results: Path | None, quick: bool = False, cores: int = 2) -> pd.DataFrame:
    """Every benchmark; ``quick`` shrinks sizes and repeats (for tests)."""
    repeats = 1 if quick else 3
    torch.set_num_threads(1)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        n_subjects = 4 if quick else 16
        sheet = small_cohort(root / "train", n_subjects, (48, 32, 32), (0.8, 1.25, 1.25))
        rows += bench_training(sheet, 16, repeats)
        rows += bench_attribution(sheet, 2 if quick else 8, 4 if quick else 16, repeats)
        rows += bench_aggregation(8 if quick else 64, (48, 32, 32), repeats)
        rows += bench_bootstrap(1000 if quick else 10_000, repeats)
        rows += bench_synthesis(2 if quick else 5)
        rows += bench_scaling(root / "scaling", (40, 200) if quick else (200, 4000))
    startup = bench_startup(repeats)
    rows += startup
    if results is not None:
        seconds = {stage: row.value for stage, row in zip(STARTUP_IMPORTS, startup)}
        rows += bench_end_to_end(results, cores, seconds)
        if (results / "validation").is_dir():
            rows += bench_grid(results / "validation", seconds)
    return pd.DataFrame([r.record() for r in rows], columns=list(BENCH_COLUMNS))
