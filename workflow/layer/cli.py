"""The ``layer`` command line: one subcommand per step a person runs by hand.

Each subcommand is a pair ``_add_<name>(subparsers)`` (arguments) + ``_run_<name>(args) -> int`` (work), so a
new one is two functions and one line in :data:`SUBCOMMANDS`. Bad input ends with one message on stderr and
exit code 2 (argparse's convention), never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from layer.cohort.validate import Rules, validate_cohort

if TYPE_CHECKING:
    import pandas as pd

    from layer.synth.config import SynthConfig

EXIT_USAGE = 2


class UsageError(Exception):
    """Bad user input found after parsing; ``main`` prints it and exits with code 2."""


def _effect(text: str) -> dict[str, object]:
    """argparse type of --effect LAYER:FEATURE:D (checked fully by SynthConfig)."""
    parts = text.split(":")
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"{text!r} is not LAYER:FEATURE:D")
    try:
        d = float(parts[2])
    except ValueError:
        raise argparse.ArgumentTypeError(f"D of {text!r} is not a number") from None
    return {"layer": parts[0], "feature": parts[1], "d": d}


def _add_synth(subparsers: argparse._SubParsersAction) -> None:
    from layer.synth.config import PRESETS, SynthConfig

    default = SynthConfig()
    p = subparsers.add_parser(
        "synth",
        help="generate a synthetic cohort (B-mode, SWE, layer maps, cohort sheet, ground truth)",
        description="Generate a synthetic 3-D lumbar ultrasound cohort with planted pain effects "
        "(docs/synthetic-cohort.md).",
    )
    p.add_argument(
        "--preset", choices=PRESETS, default=None, help="pain model (default realistic; custom with --effect)"
    )
    p.add_argument(
        "--effect",
        type=_effect,
        action="append",
        default=[],
        metavar="LAYER:FEATURE:D",
        help="planted effect, repeatable; implies --preset custom",
    )
    p.add_argument("--n-subjects", type=int, default=default.n_subjects)
    p.add_argument("--scans-per-subject", type=int, default=default.scans_per_subject)
    p.add_argument(
        "--shape",
        type=int,
        nargs=3,
        metavar=("D", "H", "W"),
        default=list(default.shape),
        help="voxels along depth, lateral, elevation",
    )
    p.add_argument(
        "--spacing",
        type=float,
        nargs="+",
        metavar="MM",
        default=None,
        help="voxel size in mm: one value or three (depth lateral elevation); " "default isotropic, 45 mm of depth",
    )
    p.add_argument(
        "--label-noise",
        type=float,
        default=default.label_noise,
        help="fraction of subjects whose label is flipped after drawing features",
    )
    p.add_argument(
        "--prevalence", type=float, default=default.prevalence, help="fraction of subjects with pain (label 1)"
    )
    p.add_argument("--seed", type=int, default=default.seed)
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="cohort directory to write")
    p.add_argument("--preview", type=Path, default=None, metavar="PNG", help="also render the first scan to PNG")


def _synthesize(cfg: SynthConfig, out: Path) -> pd.DataFrame:
    """The whole cohort, one subject per chunk so that a terminal shows progress (the files are the same
    for any number of chunks: every scan draws from its own random stream)."""
    import pandas as pd

    from layer.progress import progress
    from layer.synth.cohort import finalize_cohort, synthesize_chunk

    n = cfg.n_subjects
    parts = [synthesize_chunk(cfg, out, "scans", k, n) for k in progress(range(n), "synth", unit="subject")]
    finalize_cohort(cfg, out, [p[0] for p in parts], [p[1] for p in parts])
    return pd.concat([p[0] for p in parts]).sort_values("scan_id", kind="stable").reset_index(drop=True)


def _run_synth(args: argparse.Namespace) -> int:
    from layer.io import load_nifti
    from layer.synth import SynthConfig, render_preview

    preset = args.preset
    if args.effect:
        if preset not in (None, "custom"):
            raise UsageError(f"--effect implies --preset custom; it cannot be combined with --preset {preset}")
        preset = "custom"
    spacing = args.spacing
    if spacing is not None and len(spacing) not in (1, 3):
        raise UsageError(f"--spacing takes 1 or 3 values, got {len(spacing)}")
    try:
        cfg = SynthConfig(
            preset=preset or "realistic",
            effects=tuple(args.effect),
            n_subjects=args.n_subjects,
            scans_per_subject=args.scans_per_subject,
            shape=tuple(args.shape),
            spacing=None if spacing is None else (spacing[0] if len(spacing) == 1 else tuple(spacing)),
            label_noise=args.label_noise,
            prevalence=args.prevalence,
            seed=args.seed,
        )
    except ValueError as err:
        raise UsageError(str(err)) from None
    if args.out.exists() and not args.out.is_dir():
        raise UsageError(f"--out {args.out} exists and is not a directory")
    sheet = _synthesize(cfg, args.out)
    print(f"wrote {len(sheet)} scans of {cfg.n_subjects} subjects to {args.out} (preset {cfg.preset}, seed {cfg.seed})")
    if args.preview is not None:
        first = sheet.iloc[0]
        arrays = [load_nifti(args.out / first[key])[0] for key in ("bmode", "swe", "layers")]
        render_preview(*arrays, cfg.voxel_mm, args.preview, title=f"{first['scan_id']} (label {first['label']})")
        print(f"preview of {first['scan_id']} in {args.preview}")
    return 0


def _add_validate(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "validate",
        help="check a cohort sheet and every volume it names (the workflow's first rule)",
        description="List every problem of a cohort sheet and its volumes: scan, file, reason. "
        "Exit code 1 if there is any error; warnings alone exit 0.",
    )
    p.add_argument("sheet", type=Path, help="cohort sheet (TSV)")
    p.add_argument("--n-folds", type=int, default=Rules.n_folds, help="folds the study will use (default %(default)s)")
    p.add_argument("--affine-tolerance-mm", type=float, default=Rules.affine_tolerance_mm)
    p.add_argument("--swe-max-nan-in-box", type=float, default=Rules.swe_max_nan_in_box)
    p.add_argument("--absent-layer", choices=("error", "exclude"), default=Rules.absent_layer)
    p.add_argument("--allow-outside-paths", action="store_true")
    p.add_argument("--spacing-tolerance", type=float, default=Rules.spacing_tolerance)
    p.add_argument(
        "--min-annotated-subjects",
        type=int,
        default=Rules.min_annotated_subjects,
        help="subjects with drawn maps the segment stage needs when some scans have none (default %(default)s)",
    )
    p.add_argument(
        "--modalities",
        nargs="+",
        choices=("bmode", "swe", "fused"),
        default=None,
        help="the study's train.modalities (default: all the sheet allows); with swe or fused, a mixed sheet's "
        "scans with SWE must be enough for the folds",
    )


def _run_validate(args: argparse.Namespace) -> int:
    report, _ = validate_cohort(args.sheet, Rules.from_attributes(args))
    print(report.text(args.sheet), end="")
    return 0 if report.ok else 1


def _add_import(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "import",
        help="convert NRRD, MetaImage and DICOM exports to NIfTI and write a cohort sheet",
        description="Read a manifest (a cohort sheet whose bmode, swe and layers paths name NRRD, .mha/.mhd, "
        "DICOM files or series folders, or NIfTI), write each scan as NIfTI with depth first and no header "
        "field of the export, and a cohort sheet; log each file converted and each scan refused. Exit code 1 "
        "if any scan is refused.",
    )
    p.add_argument("manifest", type=Path, help="TSV: scan_id, subject_id, label, bmode, [swe], layers")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="cohort directory to write")
    p.add_argument(
        "--depth-axis",
        type=int,
        choices=(0, 1, 2),
        default=None,
        help="array axis of the export (ITK/NIfTI index order i, j, k) that is depth; default: from the layer "
        "map, else the DICOM image rows",
    )
    p.add_argument("--swe-unit", choices=("m/s", "kPa"), default="m/s", help="unit of the SWE exports")


def _run_import(args: argparse.Namespace) -> int:
    from layer.cohort.convert import import_cohort

    if args.out.exists() and not args.out.is_dir():
        raise UsageError(f"--out {args.out} exists and is not a directory")
    _, log = import_cohort(args.manifest, args.out, args.depth_axis, args.swe_unit)
    print(log.text(), end="")
    if log.n_converted:
        print(f"cohort sheet: {args.out / 'cohort.tsv'}; check it with: layer validate {args.out / 'cohort.tsv'}")
    return 1 if log.n_refused else 0


def _add_bench(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "bench",
        help="measure every stage against its limit; write results/bench/bench.tsv",
        description="Training data path, attribution, aggregation, bootstrap, synthesis, scaling, and the "
        "end-to-end timings of a finished run read from its Snakemake benchmark files.",
    )
    p.add_argument("--out", type=Path, default=Path("results/bench/bench.tsv"), help="table to write (%(default)s)")
    p.add_argument("--results", type=Path, default=Path("results"), help="a finished run's results/ (%(default)s)")
    p.add_argument("--cores", type=int, default=2, help="cores the finished run used (%(default)s)")
    p.add_argument("--quick", action="store_true", help="small sizes, one repeat (checks the machinery only)")


def _run_bench(args: argparse.Namespace) -> int:
    from layer.bench import run_all
    from layer.io import write_tsv

    table = run_all(args.results if args.results.exists() else None, quick=args.quick, cores=args.cores)
    write_tsv(table, args.out)
    with_bar = table.dropna(subset=["ratio"])
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"\n{(with_bar.ratio >= 1).sum()} of {len(with_bar)} bars met; table in {args.out}")
    return 0


def _cell(text: str) -> tuple[str, str]:
    """argparse type of --cell LAYER:FEATURE."""
    from layer.names import FEATURES, LAYERS

    layer, _, feature = text.partition(":")
    if layer not in LAYERS or feature not in FEATURES:
        raise argparse.ArgumentTypeError(f"{text!r} is not LAYER:FEATURE with a layer of {', '.join(LAYERS)} "
                                         f"and a feature of {', '.join(FEATURES)}")  # fmt: skip
    return layer, feature


def _add_size_scenarios(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "size-scenarios",
        help="planted d per layer x feature at which the image oracle reaches a target AUC (the grid's strengths)",
        description="Render each single-driver cohort of the recovery grid at a ladder of planted d (in memory, "
        "the grid's cohort size, a seed no grid study uses), measure the image-level oracle AUC in the "
        "feature's own modality and fit the d that reaches --target-auc (layer.validation.sizing). No network "
        "is trained. Writes ladder.tsv and sizing.tsv under --out.",
    )
    p.add_argument("--target-auc", type=float, default=0.85, help="oracle AUC to reach (default %(default)s)")
    p.add_argument("--ladder", type=float, nargs="+", default=[1.0, 2.0, 3.0], metavar="D",
                   help="planted d of the rungs (default %(default)s)")  # fmt: skip
    p.add_argument("--n-subjects", type=int, default=None, help="default: the grid's (validation.cohort)")
    p.add_argument("--scans-per-subject", type=int, default=None, help="default: the grid's (validation.cohort)")
    p.add_argument("--seed", type=int, default=None,
                   help="sizing seed (default: synthetic.seed + 500, which no grid study uses)")  # fmt: skip
    p.add_argument("--cell", type=_cell, action="append", default=[], metavar="LAYER:FEATURE",
                   help="size only these (repeatable; default every layer x feature)")  # fmt: skip
    p.add_argument("--workers", type=int, default=2, help="processes (default %(default)s)")
    p.add_argument("--out", type=Path, default=Path("results/validation/sizing"), help="directory (%(default)s)")


def _run_size_scenarios(args: argparse.Namespace) -> int:
    from concurrent.futures import ProcessPoolExecutor

    import pandas as pd

    from layer.io import write_tsv
    from layer.validation.sizing import LADDER_COLUMNS, grid_cohort, ladder_cells, ladder_point, size_strengths

    if not 0.5 < args.target_auc < 1:
        raise UsageError(f"--target-auc must be between 0.5 and 1, got {args.target_auc}")
    base, n_folds = grid_cohort(n_subjects=args.n_subjects, scans_per_subject=args.scans_per_subject, seed=args.seed)
    jobs = ladder_cells(args.cell, args.ladder)
    with ProcessPoolExecutor(max(1, args.workers)) as pool:
        rows = list(pool.map(ladder_point, [base] * len(jobs), *zip(*jobs), [n_folds] * len(jobs)))
    ladder = pd.DataFrame(rows, columns=list(LADDER_COLUMNS))
    sizing = size_strengths(ladder, args.target_auc)
    write_tsv(ladder, args.out / "ladder.tsv")
    write_tsv(sizing, args.out / "sizing.tsv")
    print(sizing.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    print(f"\n{int(sizing.testable.sum())} of {len(sizing)} testable; tables in {args.out}")
    return 0


#: name -> (add arguments, run); the order is the order of ``layer --help``.
SUBCOMMANDS: dict[str, tuple[Callable[[argparse._SubParsersAction], None], Callable[[argparse.Namespace], int]]] = {
    "synth": (_add_synth, _run_synth),
    "validate": (_add_validate, _run_validate),
    "import": (_add_import, _run_import),
    "bench": (_add_bench, _run_bench),
    "size-scenarios": (_add_size_scenarios, _run_size_scenarios),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="layer", description="LAYER study workflow tools.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add, _ in SUBCOMMANDS.values():
        add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``layer`` script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return SUBCOMMANDS[args.command][1](args)
    except UsageError as err:
        print(f"{parser.prog} {args.command}: error: {err}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
