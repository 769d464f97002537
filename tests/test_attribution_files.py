"""layer.attribution_files, the per-model attribution file: every method of a model in one .npz, read back one method at a time."""

import numpy as np
import pandas as pd
import pytest

from layer.attribution_files import Attribution, load_method, load_methods, save_model_attributions, stored_methods

IDS = ["a1", "b2"]
QC = pd.DataFrame(columns=["scan_id", "check", "value"])


def results() -> dict[str, Attribution]:
    maps = np.arange(2 * 2 * 3 * 2 * 2, dtype=np.float32).reshape(2, 2, 3, 2, 2)
    scores = np.array([[[1.0, 2, 3, 4, 5, 6]], [[-1.0, 0, 0, 0, 0, 2]]])
    coalitions = np.tile(np.arange(64, dtype=float), (2, 1))
    return {
        "integrated_gradients": Attribution("maps", maps, IDS, ("bmode", "swe"), QC),
        "shapley_background": Attribution("scores", scores, IDS, ("all",), QC, coalitions=coalitions),
    }


def test_each_method_reads_back_its_own_arrays_with_the_model_identity(tmp_path):
    path = str(tmp_path / "fold1.npz")
    save_model_attributions(path, results(), modality="fused", fold=1, null_model=None)
    assert stored_methods(path) == ["integrated_gradients", "shapley_background"]
    ig = load_method(path, "integrated_gradients")
    assert set(ig) == {"maps", "scan_ids", "channels", "modality", "fold", "method"}  # no null_model: trained
    np.testing.assert_array_equal(ig["maps"], results()["integrated_gradients"].values)
    assert list(ig["channels"]) == ["bmode", "swe"] and list(ig["scan_ids"]) == IDS
    assert str(ig["modality"]) == "fused" and int(ig["fold"]) == 1 and str(ig["method"]) == "integrated_gradients"
    sh = load_method(path, "shapley_background")
    assert set(sh) == {"scores", "scan_ids", "channels", "coalitions", "modality", "fold", "method"}
    assert sh["coalitions"].shape == (2, 64) and sh["scores"][1, 0, 5] == 2.0


def test_a_null_model_file_names_its_replicate_and_load_methods_skips_methods_it_lacks(tmp_path):
    trained, null = str(tmp_path / "t.npz"), str(tmp_path / "n.npz")
    save_model_attributions(trained, results(), modality="bmode", fold=0, null_model=None)
    save_model_attributions(null, {"shapley_background": results()["shapley_background"]}, modality="bmode",
                            fold=0, null_model=3)
    got = load_methods([trained, null], ["shapley_background", "integrated_gradients"])
    assert [(str(g["method"]), "null_model" in g) for g in got] == [
        ("shapley_background", False), ("integrated_gradients", False), ("shapley_background", True)
    ]
    assert int(got[2]["null_model"]) == 3


def test_a_missing_method_or_a_foreign_file_is_named(tmp_path):
    path = str(tmp_path / "m.npz")
    save_model_attributions(path, results(), modality="bmode", fold=0)
    with pytest.raises(ValueError, match=r"m\.npz: no method 'gradcam' \(it holds integrated_gradients, shapley"):
        load_method(path, "gradcam")
    np.savez(tmp_path / "other.npz", maps=np.zeros(2))
    with pytest.raises(ValueError, match="not a per-model attribution file"):
        stored_methods(str(tmp_path / "other.npz"))
    with pytest.raises(ValueError, match="no attribution method"):
        save_model_attributions(str(tmp_path / "empty.npz"), {}, modality="bmode", fold=0)
    assert not (tmp_path / "empty.npz").exists()
