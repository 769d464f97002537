#!/usr/bin/env bash
# The recovery grid one study at a time (issue "The recovery proof"): each scenario x seed of the default
# config finishes before the next starts, so a run cut short leaves whole studies, and each study's wall time
# is logged. `snakemake validation --cores 2` runs the same jobs (and the summary) in one DAG.
# Use: bash docs/measurements/grid/run.sh [STUDY ...]   (STUDY = scenario/seedR; default: the list below)
set -u
cd "$(dirname "$0")/../../.."
out=results/grid_run
mkdir -p "$out"
studies=("$@")
if [ ${#studies[@]} -eq 0 ]; then
  studies=(dfm_echogenicity/seed0 muscle_stiffness/seed0 null/seed0 sfm_thickness/seed0 realistic/seed0
           two_drivers/seed0 dermis_thickness/seed0 dfm_stiffness/seed0 null/seed1 confounded/seed0
           sfm_echogenicity/seed0 deep_fat_echogenicity/seed0 muscle_thickness/seed0 null/seed2
           superficial_fat_texture/seed0 dfm_thickness/seed0 sfm_stiffness/seed0 null/seed3)
fi
[ -f "$out/walls.tsv" ] || printf 'study\twall_s\trc\tfinished\n' > "$out/walls.tsv"
for s in "${studies[@]}"; do
  start=$(date +%s)
  .venv/bin/snakemake "results/validation/$s/recovery.tsv" --cores 2 > "$out/${s//\//_}.log" 2>&1
  rc=$?
  printf '%s\t%s\t%s\t%s\n' "$s" "$(( $(date +%s) - start ))" "$rc" "$(date -u +%FT%TZ)" >> "$out/walls.tsv"
done
