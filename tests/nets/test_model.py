"""The networks (layer.nets.model): the lateral-pooling stem by hand, and its Grad-CAM layers."""

from __future__ import annotations

import torch

from layer.nets.model import LateralPooled, ModelSpec, build_model, gradcam_layers, load_model


def test_lateral_pool_averages_across_lateral_voxels_and_keeps_depth():
    pool = LateralPooled(torch.nn.Identity(), 4)
    x = torch.arange(2 * 6 * 6, dtype=torch.float32).reshape(1, 1, 2, 6, 6)
    y = pool(x)
    # 6 voxels in windows of 4: one full window and one of 2 (ceil mode; the partial window is averaged
    # over the voxels it has). Depth 2 is kept.
    assert y.shape == (1, 1, 2, 2, 2)
    assert torch.isclose(y[0, 0, 0, 0, 0], x[0, 0, 0, :4, :4].mean())
    assert torch.isclose(y[0, 0, 1, 1, 1], x[0, 0, 1, 4:, 4:].mean())


def test_every_input_voxel_keeps_a_gradient():
    torch.manual_seed(0)
    model = build_model("resnet", in_channels=2, width=4, lateral_pool=4).eval()
    x = torch.rand(1, 2, 16, 10, 10, requires_grad=True)
    model(x).sum().backward()
    assert model(x).shape == (1, 1) and (x.grad.abs() > 0).float().mean() > 0.99


def test_gradcam_layers_resolve_inside_the_wrapper():
    for pool in (1, 4):
        spec = ModelSpec(lateral_pool=pool)
        model = build_model(spec.name, 1, spec.width, lateral_pool=pool)
        names = dict(model.named_modules())
        fine, last = gradcam_layers(spec)
        assert fine in names and last in names
        assert fine.startswith("net.") == (pool > 1)


def test_a_saved_pooled_model_loads_as_pooled(tmp_path):
    spec = ModelSpec(lateral_pool=4, width=4)
    model = build_model(spec.name, 2, spec.width, lateral_pool=4)
    from dataclasses import asdict

    torch.save({"model": asdict(spec), "modality": "fused", "fold": 1, "state_dict": model.state_dict()},
               tmp_path / "m.pt")  # fmt: skip
    loaded, loaded_spec, modality, fold = load_model(tmp_path / "m.pt")
    assert isinstance(loaded, LateralPooled) and loaded_spec == spec and (modality, fold) == ("fused", 1)
    # A model file from before the setting existed loads as unpooled.
    old = {k: v for k, v in asdict(ModelSpec(width=4)).items() if k != "lateral_pool"}
    torch.save({"model": old, "modality": "bmode", "fold": 0,
                "state_dict": build_model("resnet", 1, 4).state_dict()}, tmp_path / "old.pt")  # fmt: skip
    assert not isinstance(load_model(tmp_path / "old.pt")[0], LateralPooled)
