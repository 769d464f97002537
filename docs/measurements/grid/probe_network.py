"""Probe (docs/validation.md, "Networks that learn what the images show"): does a network learn one study's
planted effect? Trains the study's bmode (or another modality's) models on its 3 folds with the workflow's
own training code and a network variant, and prints the pooled out-of-fold AUC per scan and per subject.

Run: .venv/bin/python docs/measurements/grid/probe_network.py STUDY VARIANT [MODALITY] [long|norm]
  STUDY    a study folder with cohort/validated.tsv and splits/folds.tsv (results/validation/X/seed0)
  VARIANT  base | pool:K (the ResNet behind a K x K lateral mean) | wide:W (ResNet of width W)
  long     40 epochs, patience 10;  norm  long + per-scan intensity standardisation (NormalizeIntensityd)
"""
import sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "workflow"))
import numpy as np, pandas as pd, torch
from sklearn.metrics import roc_auc_score
import layer.nets.train as T
import layer.nets.model as M
from layer.io import read_tsv

S = sys.argv[1]
variant = sys.argv[2]
modality = sys.argv[3] if len(sys.argv) > 3 else "bmode"
torch.set_num_threads(1)
sheet = read_tsv(f"{S}/cohort/validated.tsv")
sheet["bmode"] = [f"{S}/cohort/synthetic/" + p if not p.startswith("/") else p for p in sheet["bmode"]]
for c in ("swe", "layers"):
    sheet[c] = [f"{S}/cohort/synthetic/" + p if not str(p).startswith("/") else p for p in sheet[c]]
folds = read_tsv(f"{S}/splits/folds.tsv")

orig = M.build_model
def build(name, in_channels, width=8, dropout=0.0):
    kind, _, arg = variant.partition(":")
    if kind == "pool":
        k = int(arg or 4)
        return orig("resnet", in_channels, width, lateral_pool=k)
    if kind == "wide":
        return orig("resnet", in_channels, int(arg))
    return orig("resnet", in_channels, width)
T.build_model = build
if "norm" in sys.argv[4:]:
    import layer.nets.data as D
    from monai.transforms import Compose, NormalizeIntensityd
    orig_pre = D.preprocessing
    def pre(*a, **k):
        c = orig_pre(*a, **k)
        return Compose(list(c.transforms) + [NormalizeIntensityd(keys="image", channel_wise=True)])
    D.preprocessing = pre
settings = T.TrainSettings.defaults()
if variant.startswith("reg"):
    settings = T.TrainSettings.defaults(learning_rate=3e-4, weight_decay=1e-2, max_epochs=30, patience=8)
if "long" in sys.argv[4:] or "norm" in sys.argv[4:]:
    settings = T.TrainSettings.defaults(max_epochs=40, patience=10)
t = time.time()
oofs = []
for fold in sorted(folds["fold"].unique()):
    _, curve, oof = T.train_fold(sheet, folds, modality, int(fold), M.ModelSpec(), settings, threads=1)
    oofs.append(oof)
    print(variant, "fold", fold, "best val", round(curve.val_auc.max(), 3), "epochs", len(curve),
          "test auc", round(roc_auc_score(oof.label, oof.prob), 3), flush=True)
oof = pd.concat(oofs)
sub = oof.groupby("subject_id").agg(label=("label", "first"), prob=("prob", "mean"))
print(f"RESULT {variant} {modality} pooled scan AUC {roc_auc_score(oof.label, oof.prob):.3f} subject AUC "
      f"{roc_auc_score(sub.label, sub.prob):.3f} wall {time.time()-t:.0f}s", flush=True)
