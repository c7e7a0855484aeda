"""The contract every registered method keeps (timm's test_models.py pattern).

Parametrized over ``method_names()``, so a new method is tested by adding its file: each method
declares a tiny ``test_config`` (random weights, CPU, seconds); one without is skipped, and named.
"""

from __future__ import annotations

import contextlib
import dataclasses

import numpy as np
import pytest
import torch

from tinct.checkpoint import save_checkpoint
from tinct.color import luminance
from tinct.methods import build_method, get_method, method_names
from tinct.pipeline import Colorizer
from tinct.weights import export_run, load_model

METHODS = method_names()
COLORIZERS = [m for m in METHODS if get_method(m).is_colorizer]
ODD_SIZES = [(37, 23), (16, 61)]


def _build(name: str) -> tuple:
    torch.manual_seed(0)
    cls = get_method(name)
    if not cls.test_config:
        pytest.skip(f"{name} declares no test_config (a tiny config for this contract)")
    method = build_method(name, dict(cls.test_config), pretrained=False)
    return method, method.config


def _batch(size: int, n: int = 2) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    low = torch.rand(n, 3, 4, 4, generator=g)
    rgb = torch.nn.functional.interpolate(low, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)
    return {"rgb": rgb, "gray": luminance(rgb), "label": torch.arange(n) % 5}


def _run(tmp_path, method) -> str:
    """A training run holding ``method`` (its inference network as the EMA) and its export."""
    run = tmp_path / "run"
    run.mkdir()
    save_checkpoint({"method": method.name, "config": dataclasses.asdict(method.config), "step": 0,
                     "model": method.state_dict(), "ema": method.inference_module().state_dict(), "optimizers": {},
                     "data": ["synthetic"], "data_images": 0, "data_dropped_gray": 0}, run / "checkpoint.pt")
    return str(export_run(run, f"tiny_{method.name}", dest=tmp_path / "export"))


def test_the_builtin_methods_declare_a_tiny_test_config():
    for name in ("bigcolor", "cic", "prior", "unet_gan"):
        assert get_method(name).test_config and get_method(name).loss_names, name


@pytest.mark.parametrize("name", COLORIZERS)
def test_odd_sizes_give_ab_of_the_input_shape_and_range(name):
    method, _cfg = _build(name)
    method.eval()
    for h, w in ODD_SIZES:
        lightness = torch.linspace(0, 100, h * w).view(1, 1, h, w)
        with torch.no_grad():
            ab = method.predict_ab(lightness)
        assert ab.shape == (1, 2, h, w), name
        assert torch.isfinite(ab).all() and ab.abs().max() <= 110, name


@pytest.mark.parametrize("name", METHODS)
def test_one_train_step_updates_parameters(name):
    method, cfg = _build(name)
    method.train()
    before = {k: v.detach().clone() for k, v in method.named_parameters()}
    losses = method.train_step(_batch(cfg.image_size), method.make_optimizers(), 0, contextlib.nullcontext)
    assert losses and all(np.isfinite(v) for v in losses.values()), (name, losses)
    changed = [k for k, v in method.named_parameters() if not torch.equal(v, before[k])]
    assert changed, f"{name}: one train step changed no parameter"


@pytest.mark.parametrize("name", METHODS)
def test_export_then_load_round_trips_and_builds_only_the_inference_network(name, tmp_path):
    method, _cfg = _build(name)
    method.eval()
    # the export stores float16: compare against the same weights rounded so
    state = method.inference_module().state_dict()
    method.inference_module().load_state_dict({k: v.half().float() if v.is_floating_point() else v for k, v in state.items()})
    exported = _run(tmp_path, method)
    for source in (exported, str(tmp_path / "run")):
        loaded, info = load_model(source)
        assert info["method"] == name
        n_loaded = sum(p.numel() for p in loaded.parameters())
        assert n_loaded == sum(p.numel() for p in loaded.inference_module().parameters()), f"{name}: inference built more"
        for key, value in method.inference_module().state_dict().items():
            assert torch.equal(loaded.inference_module().state_dict()[key], value), (name, key)
        if method.is_colorizer:
            lightness = torch.linspace(0, 100, 37 * 23).view(1, 1, 37, 23)
            with torch.no_grad():
                assert torch.allclose(loaded.predict_ab(lightness), method.predict_ab(lightness), atol=1e-5), name


@pytest.mark.parametrize("name", COLORIZERS)
def test_unknown_or_ill_typed_options_raise(name, tmp_path):
    method, _cfg = _build(name)
    colorizer = Colorizer(_run(tmp_path, method), device="cpu", size=32)
    gray = np.linspace(0, 1, 24 * 20, dtype=np.float32).reshape(24, 20)
    with pytest.raises(ValueError, match="has no option 'no_such_option'"):
        colorizer.colorize(gray, no_such_option=1)
    for opt in method.inference_options:
        if opt.type in ("float", "int"):
            with pytest.raises(ValueError, match="expected"):
                colorizer.colorize(gray, **{opt.name: "not a number"})
    with pytest.raises(TypeError, match="no inference option 'temprature'"):
        method.predict_ab(torch.zeros(1, 1, 16, 16), temprature=0.0)


def test_cli_flags_are_generated_from_every_declared_option(capsys):
    from tinct.cli import build_parser, method_options
    from tinct.methods import declared_options

    for command in ("colorize", "eval"):
        with pytest.raises(SystemExit):
            build_parser().parse_args([command, "--help"])
        text = capsys.readouterr().out
        for name, (_opt, owners) in declared_options().items():
            assert f"--{name.replace('_', '-')} " in text and owners[0] in text, (command, name)
    args = build_parser().parse_args(["colorize", "x", "-o", "y", "--temperature", "0.2", "--class", "goldfish", "--top-k", "2"])
    assert method_options(args) == {"temperature": 0.2, "class": "goldfish", "top_k": 2}


def test_method_commands_are_registered_and_the_old_prior_spelling_still_works(shard, tmp_path, caplog):
    from tinct.cli import main
    from tinct.methods import method_commands

    names = {cmd.name for _cls, cmd in method_commands()}
    assert {"ab-histogram", "temperature", "sample"} <= names
    out = tmp_path / "prior.json"
    assert main(["prior", "--data", str(shard), "-o", str(out), "--images", "4", "--no-progress"]) == 0
    assert out.exists() and "`tinct prior` is deprecated" in caplog.text and "tinct ab-histogram" in caplog.text
