"""The segment stage's parts on hand-made toys: anatomy-keeping post-processing (exact, and its check failing
on planted faults), the subject-level split, the sheet with map_source, Dice and surface distance by hand,
withheld synthetic maps, and a UNet that learns a toy cohort."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from layer.segment.anatomy import STATE_LABELS, is_ordered, ordered_labels
from layer.segment.quality import scan_metrics, summarize
from layer.segment.sheet import segmentation_split, with_predicted_maps
from layer.synth.cohort import withhold_maps

#: One column: gel, dermis, superficial fat x2, SFM, deep fat x3, DFM, muscle x2, bone.
COLUMN = np.array([0, 1, 2, 2, 3, 4, 4, 4, 5, 6, 6, 0])


def _confident(labels: np.ndarray, p: float = 0.9) -> np.ndarray:
    """Log-probabilities ``[7, *labels.shape]`` putting ``p`` on the given label of each voxel."""
    probs = np.full((7, *labels.shape), (1 - p) / 6)
    np.put_along_axis(probs, labels[None].astype(np.int64), p, axis=0)
    return np.log(probs)


def test_ordered_labels_keeps_a_correct_map_and_fixes_an_out_of_order_voxel():
    truth = np.broadcast_to(COLUMN[:, None, None], (12, 3, 2)).copy()
    assert is_ordered(truth)
    assert (ordered_labels(_confident(truth)) == truth).all()
    scores = _confident(truth)
    scores[:, 6, 0, 0] = np.log(np.full(7, 0.2 / 5))
    scores[3, 6, 0, 0], scores[4, 6, 0, 0] = np.log(0.5), np.log(0.3)  # argmax: an SFM voxel inside the deep fat
    assert scores.argmax(axis=0)[6, 0, 0] == 3 and not is_ordered(scores.argmax(axis=0))
    fixed = ordered_labels(scores)
    assert is_ordered(fixed) and (fixed == truth).all()


def test_ordered_labels_is_the_best_ordered_column_by_brute_force():
    rng = np.random.default_rng(3)
    depth = 8
    for _ in range(5):
        scores = np.log(rng.dirichlet(np.ones(7), size=depth).T)[:, :, None, None]
        best, best_score = None, -np.inf
        # every state path: start in state 0 or 1, stay or step by one, end in state 6 or 7
        for steps in itertools.product((0, 1), repeat=depth - 1):
            for start in (0, 1):
                states = start + np.concatenate([[0], np.cumsum(steps)])
                if states[-1] not in (6, 7):
                    continue
                labels = STATE_LABELS[states]
                total = scores[labels, np.arange(depth), 0, 0].sum()
                if total > best_score:
                    best, best_score = labels, total
        got = ordered_labels(scores)[:, 0, 0]
        assert scores[got, np.arange(depth), 0, 0].sum() == pytest.approx(best_score)
        assert is_ordered(got[:, None, None])


@pytest.mark.parametrize(
    "fault",
    [
        lambda c: c.__setitem__(9, 4),  # a deep-fat voxel inside the muscle
        lambda c: c.__setitem__(8, 6),  # the DFM gone from the column
        lambda c: c.__setitem__(5, 0),  # a background hole inside the tissue
        lambda c: c.__setitem__(slice(1, 2), 2),  # no dermis
    ],
)
def test_is_ordered_fails_on_planted_faults(fault):
    column = COLUMN.copy()
    fault(column)
    assert not is_ordered(column[:, None, None])


def test_ordered_labels_refuses_a_column_too_short_for_six_layers():
    with pytest.raises(ValueError, match="cannot hold the 6 layers"):
        ordered_labels(np.zeros((7, 5, 2, 2)))


def _sheet(n_subjects: int, scans: int = 2, drawn_subjects: int | None = None) -> pd.DataFrame:
    rows = []
    for s in range(n_subjects):
        for k in range(scans):
            drawn = drawn_subjects is None or s < drawn_subjects
            rows.append({"scan_id": f"s{s}-{k}", "subject_id": f"sub{s}", "label": s % 2,
                         "bmode": f"/b/s{s}-{k}.nii.gz", "layers": f"/l/s{s}-{k}.nii.gz" if drawn else np.nan})  # fmt: skip
    return pd.DataFrame(rows)


def test_split_is_by_subject_stratified_and_predicts_the_unannotated():
    sheet = _sheet(20, drawn_subjects=8)
    split = segmentation_split(sheet, held_out_fraction=0.25, seed=0)
    roles = split.groupby("subject_id")["role"].agg(set)
    assert all(len(r) == 1 for r in roles)  # no subject in two parts
    counts = split.drop_duplicates("subject_id")["role"].value_counts().to_dict()
    assert counts == {"predict": 12, "train": 6, "held_out": 2}
    held = split[split["role"] == "held_out"].drop_duplicates("subject_id")
    assert sorted(held["label"]) == [0, 1]  # stratified: one of each class
    assert split.equals(segmentation_split(sheet, 0.25, 0))  # same seed, same split


def test_split_needs_two_annotated_subjects():
    with pytest.raises(ValueError, match="1 subject"):
        segmentation_split(_sheet(6, drawn_subjects=1), 0.25, 0)


def test_sheet_with_predicted_maps_says_where_each_map_came_from():
    sheet = _sheet(3, drawn_subjects=1)
    predicted = {f"s{s}-{k}": f"/p/s{s}-{k}.nii.gz" for s in (1, 2) for k in (0, 1)}
    out = with_predicted_maps(sheet, predicted)
    assert out["map_source"].tolist() == ["drawn"] * 2 + ["predicted"] * 4
    assert out["layers"].tolist()[:3] == ["/l/s0-0.nii.gz", "/l/s0-1.nii.gz", "/p/s1-0.nii.gz"]
    assert list(out.columns).index("map_source") == list(out.columns).index("layers") + 1
    with pytest.raises(ValueError, match="scan s2-1 has no drawn and no predicted layer map"):
        with_predicted_maps(sheet, {k: v for k, v in predicted.items() if k != "s2-1"})


def test_dice_and_surface_distance_by_hand():
    reference = np.broadcast_to(COLUMN[:, None, None], (12, 4, 4)).copy()
    predicted = reference.copy()
    predicted[7] = 5  # the DFM one voxel thicker upwards in every column: deep fat 3 -> 2 voxels
    table = scan_metrics(predicted, reference, (0.5, 1.0, 1.0)).set_index("layer")
    assert table.at["dermis", "dice"] == 1.0 and table.at["muscle", "dice"] == 1.0
    assert table.at["deep_fat", "dice"] == pytest.approx(2 * 2 / (2 + 3))
    assert table.at["dfm", "dice"] == pytest.approx(2 * 1 / (2 + 1))
    assert table.at["dermis", "mean_surface_distance_mm"] == 0.0
    assert table.at["dfm", "mean_surface_distance_mm"] > 0


def test_summary_is_the_mean_over_scans_with_a_subject_interval():
    rows = []
    for s, dice in enumerate([0.8, 0.9, 0.7, 1.0]):
        for layer in ("dermis", "superficial_fat", "sfm", "deep_fat", "dfm", "muscle"):
            rows.append({"scan_id": f"s{s}", "subject_id": f"sub{s}", "reference": "drawn", "layer": layer,
                         "dice": dice, "mean_surface_distance_mm": 1.0 - dice})  # fmt: skip
    summary = summarize(pd.DataFrame(rows), 200, 0.95, 0).set_index(["metric", "layer"])
    assert summary.at[("dice", "dfm"), "estimate"] == pytest.approx(0.85)
    assert summary.at[("dice", "mean"), "estimate"] == pytest.approx(0.85)
    assert summary.at[("dice", "dfm"), "ci_low"] < 0.85 < summary.at[("dice", "dfm"), "ci_high"]
    assert summary.at[("dice", "dfm"), "n_subjects"] == 4


def test_withheld_synthetic_maps_keep_the_truth():
    sheet = _sheet(20).assign(label=[0] * 20 + [1] * 20)
    out = withhold_maps(sheet, 0.3, seed=1)
    kept = out.loc[out["layers"].notna()].drop_duplicates("subject_id")
    assert len(kept) == 6 and sorted(kept["label"].value_counts()) == [3, 3]
    assert out["true_layers"].tolist() == sheet["layers"].tolist()
    assert withhold_maps(sheet, 1.0, 1) is sheet
