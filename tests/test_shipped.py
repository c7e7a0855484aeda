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
