#!/usr/bin/env bash
# The segment stage at the default size (docs/measured.md, "The segment stage"): the main cohort (quality),
# the DFM-only and null cohorts (quality and primary calls on predicted maps), then the same two cohorts with
# every map drawn (calls on true maps). Work and logs under results/segmentation_check/. About 60 min on 2 cores.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
out="$root/results/segmentation_check"
sm="$root/.venv/bin/snakemake -s $root/Snakefile --cores 2 --rerun-incomplete"
calls="stats/layer_calls.tsv stats/layer_calls_drawn_maps.tsv"
mkdir -p "$out/partial" "$out/true"
cd "$out/partial"
/usr/bin/time -v $sm results/segmentation/quality.tsv \
  $(for c in dfm_only null_cohort; do for f in $calls segmentation/quality.tsv; do echo "results/paper_check/$c/$f"; done; done) \
  --configfile "$root/config/config.yaml" "$here/common.yaml" "$here/partial.yaml" > "$out/partial.log" 2>&1
cd "$out/true"
/usr/bin/time -v $sm results/paper_check/dfm_only/stats/layer_calls.tsv results/paper_check/null_cohort/stats/layer_calls.tsv \
  --configfile "$root/config/config.yaml" "$here/common.yaml" "$here/true.yaml" > "$out/true.log" 2>&1
