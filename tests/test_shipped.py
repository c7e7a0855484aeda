"""The weights shipped in the package: verified, loadable, and they really colorize."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tinct.cli import main
from tinct.methods import get_method
from tinct.data import colorfulness
from tinct.weights import DEFAULT_MODEL, list_models, sha256_file, weights_dir

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


SHIPPED = {c["name"]: c for c in list_models()}
COLORIZERS = [name for name, card in SHIPPED.items() if get_method(card["method"]).is_colorizer]


def test_default_model_is_shipped():
    assert DEFAULT_MODEL in SHIPPED


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_model_has_a_valid_card(name):
    card = SHIPPED[name]
    path = weights_dir() / card["file"]
    assert sha256_file(path) == card["sha256"]
    assert path.stat().st_size < 25_000_000
    assert (weights_dir() / f"{name}.md").exists()
    assert card["training"]["steps"] > 0


@pytest.mark.parametrize("name", ["default", *sorted(COLORIZERS)])
def test_cli_colorizes_bundled_examples(name, tmp_path, capsys):
    out = tmp_path / "colorized"
    assert main(["colorize", str(EXAMPLES), "-o", str(out), "--model", name, "--no-progress"]) == 0
    assert "done 4, skipped 0, failed 0" in capsys.readouterr().out
    cf = []
    for src in sorted(EXAMPLES.glob("*.jpg")):
        result = Image.open(out / f"{src.stem}.png")
        assert result.size == Image.open(src).size and result.mode == "RGB"
        cf.append(colorfulness(np.asarray(result)))
    # a trained model adds visible color to real photos (gray input has colorfulness 0)
    assert np.mean(cf) > 8, cf


def test_models_listing(capsys):
    assert main(["models", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert "unet_gan" in listing["methods"] and listing["models"]


def test_damaged_weights_without_a_card_are_refused(tiny_model, tmp_path, capsys):
    """NaN in a tensor used to load silently, then crash a batch with an IndexError."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from tinct.cli import main
    from tinct.weights import WeightsError, load_model

    with safe_open(str(tiny_model), framework="pt") as f:
        meta, state = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    key = next(k for k, v in state.items() if v.is_floating_point() and v.numel() > 4)
    state[key] = state[key].clone()
    state[key].view(-1)[0] = float("nan")
    bad = tmp_path / "bad.safetensors"
    save_file(state, str(bad), metadata=meta)
    with pytest.raises(WeightsError, match="NaN or infinite"):
        load_model(str(bad))
    src = tmp_path / "in.png"
    from PIL import Image

    Image.new("L", (20, 20), 128).save(src)
    assert main(["colorize", str(src), "-o", str(tmp_path / "out"), "--model", str(bad), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.safetensors" in err[0] and "NaN" in err[0]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
