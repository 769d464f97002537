"""Train the segmentation on the drawn maps of the training subjects; write the network, its curve and the split."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from layer.config import from_params  # noqa: E402
from layer.io import atomic_path, read_tsv, write_tsv  # noqa: E402
from layer.logs import log_to  # noqa: E402
from layer.nets.data import make_items  # noqa: E402
from layer.nets.train import remove_checkpoint  # noqa: E402
from layer.segment.net import SegmentSettings, train_unet  # noqa: E402
from layer.segment.sheet import segmentation_split  # noqa: E402

log = log_to(snakemake.log[0])
p = snakemake.params
sheet = read_tsv(snakemake.input.sheet)
split = segmentation_split(sheet, p.held_out_fraction, p.seed)
log.info("segmentation split: %s", split["role"].value_counts().to_dict())
settings = from_params(SegmentSettings, p)
train_ids = split.loc[split["role"] == "train", "scan_id"].tolist()
weights, curve = train_unet(make_items(sheet, train_ids), settings, p.bmode_max, snakemake.threads, p.checkpoint)
write_tsv(split, snakemake.output.split)
write_tsv(curve, snakemake.output.curve)
with atomic_path(snakemake.output.model) as tmp:
    torch.save({"state_dict": weights, "width": settings.width}, tmp)
remove_checkpoint(p.checkpoint)
log.info("segmentation trained on %d scans, final loss %.4f", len(train_ids), curve["train_loss"].iloc[-1])
