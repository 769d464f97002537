"""Predict the maps of the scans without one (and of the held-out annotated scans, for the quality report);
write the sheet every later step reads, with each scan's map and its map_source."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from layer.io import read_tsv, write_tsv  # noqa: E402
from layer.logs import log_to  # noqa: E402
from layer.segment.predict import predict_maps  # noqa: E402
from layer.segment.sheet import with_predicted_maps  # noqa: E402

log = log_to(snakemake.log[0])
sheet = read_tsv(snakemake.input.sheet)
split = read_tsv(snakemake.input.split)
wanted = split.loc[split["role"].isin(["held_out", "predict"]), "scan_id"].astype(str).tolist()
saved = torch.load(snakemake.input.model, map_location="cpu", weights_only=True)
written = predict_maps(sheet, wanted, saved, snakemake.params.bmode_max, snakemake.output.maps, snakemake.threads)
to_use = set(split.loc[split["role"] == "predict", "scan_id"].astype(str))
write_tsv(with_predicted_maps(sheet, {k: v for k, v in written.items() if k in to_use}), snakemake.output.sheet)
log.info("predicted %d maps (%d used, %d held out for quality)", len(written), len(to_use), len(written) - len(to_use))
