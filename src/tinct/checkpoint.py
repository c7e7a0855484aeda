"""Checkpoints and inference weights on disk: the one module that writes and reads their format.

Bottom layer: it knows no method (it imports only :mod:`tinct.io`), so methods, training,
export and loading all use it without an import loop.

- A **training checkpoint** (``RUN_DIR/checkpoint.pt``, written by :func:`save_checkpoint`) is a
  ``torch.save`` dict: ``method``, ``config`` (dict), ``step``, ``model`` (every network's state,
  keys prefixed by the sub-module: ``generator.``, ``discriminator.`` ...), ``ema`` (the EMA
  state of the inference network), ``optimizers``, ``data``, ``data_images``, ``data_dropped_gray``.
- **Inference weights** (``NAME.safetensors``, written by :func:`save_inference_weights`) hold
  the inference network's state (float16) and, in the metadata, ``method``, ``config`` (JSON),
  ``working_size`` and ``name``. A shipped model's ``NAME.json`` card records the file's SHA-256,
  verified by :func:`load_inference_state` before every load.
"""

from __future__ import annotations

import hashlib
import json
import os
from importlib.resources import files
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .io import atomic_path

__all__ = [
    "CHECKPOINT_NAME", "DEFAULT_MODEL", "WeightsError", "save_checkpoint", "load_checkpoint", "network_state",
    "checkpoint_inference_state", "weights_dir", "sha256_file", "resolve_model", "load_inference_state",
    "save_inference_weights", "trained_model",
]

CHECKPOINT_NAME = "checkpoint.pt"
#: the model used when none is named (``--model default``)
DEFAULT_MODEL = "cic"


class WeightsError(ValueError):
    """A model that cannot be loaded (unknown name, corrupt file, checksum mismatch)."""


# --- training checkpoints ---------------------------------------------------------------------
def save_checkpoint(obj: dict[str, Any], path: str | os.PathLike) -> None:
    """``torch.save`` atomically: a temp file in the same folder, fsync, then ``os.replace``."""
    with atomic_path(path, fsync=True) as tmp, open(tmp, "wb") as f:
        torch.save(obj, f)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a training checkpoint (a file, or a run directory holding checkpoint.pt) on CPU."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.exists():
        raise FileNotFoundError(f"{path}: no checkpoint")
    return torch.load(path, map_location="cpu", weights_only=False)


def network_state(ckpt: dict[str, Any], name: str) -> dict[str, torch.Tensor]:
    """The trained state of one sub-module (e.g. ``"discriminator"``) from a checkpoint's ``model``
    entry, keys without the ``NAME.`` prefix; empty when the checkpoint has none."""
    prefix = f"{name}."
    return {k[len(prefix):]: v for k, v in (ckpt.get("model") or {}).items() if k.startswith(prefix)}


def _float32(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def checkpoint_inference_state(source: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The float32 EMA inference weights of a training run (its folder or checkpoint file) and
    their metadata (``method``, ``config``, ``working_size``, ``card``, ``path``, ``step``)."""
    ckpt = load_checkpoint(source)
    info = {"method": ckpt["method"], "config": ckpt["config"], "working_size": ckpt["config"].get("image_size"),
            "card": {}, "path": str(source), "step": ckpt["step"]}
    return _float32(ckpt["ema"]), info


# --- inference weights (.safetensors) ---------------------------------------------------------
def weights_dir() -> Path:
    """The installed package's folder of shipped weights and model cards."""
    return Path(str(files("tinct").joinpath("weights")))


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def shipped_cards() -> list[dict[str, Any]]:
    """Card data of every model shipped in the package."""
    cards = []
    for card in sorted(weights_dir().glob("*.json")):
        data = json.loads(card.read_text(encoding="utf-8"))
        if "sha256" in data:
            cards.append(data)
    return cards


def resolve_model(name_or_path: str) -> tuple[Path, dict[str, Any] | None]:
    """Path of the weights file for a shipped model name (or 'default') or a .safetensors path,
    with its card data when it has one."""
    name = DEFAULT_MODEL if name_or_path == "default" else name_or_path
    candidate = Path(name)
    if candidate.suffix == ".safetensors":
        if not candidate.exists():
            raise WeightsError(f"{candidate}: no such weights file")
        card_path = candidate.with_suffix(".json")
        card = json.loads(card_path.read_text(encoding="utf-8")) if card_path.exists() else None
        return candidate, card
    path = weights_dir() / f"{name}.safetensors"
    card_path = weights_dir() / f"{name}.json"
    if not path.exists() or not card_path.exists():
        known = ", ".join(m["name"] for m in shipped_cards()) or "none"
        raise WeightsError(f"unknown model {name_or_path!r}; shipped models: {known}")
    return path, json.loads(card_path.read_text(encoding="utf-8"))


def load_inference_state(name_or_path: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Verified float32 state dict of a model's inference network and its metadata
    (``method``, ``config``, ``working_size``, card data): a shipped name, a ``.safetensors``
    file or a training run (folder or checkpoint file: its EMA weights)."""
    source = Path(name_or_path)
    if source.is_dir() or source.suffix in (".pt", ".pth"):
        return checkpoint_inference_state(source)
    path, card = resolve_model(name_or_path)
    if card is not None and "sha256" in card:
        actual = sha256_file(path)
        if actual != card["sha256"]:
            raise WeightsError(
                f"{path}: SHA-256 mismatch (file {actual[:12]}..., expected {card['sha256'][:12]}...): "
                "the weights file is corrupt or was changed; reinstall tinct"
            )
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = dict(f.metadata() or {})
            state = {k: f.get_tensor(k) for k in f.keys()}
        state = _float32(state)
    except Exception as exc:  # safetensors raises its own error types for damaged headers
        raise WeightsError(f"{path}: cannot read weights ({exc})") from None
    if "method" not in meta or "config" not in meta:
        raise WeightsError(f"{path}: not a tinct weights file (metadata lacks method/config)")
    bad = next((k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()), None)
    if bad is not None:
        raise WeightsError(f"{path}: weight {bad!r} holds NaN or infinite values (a damaged file)")
    info = {
        "method": meta["method"],
        "config": json.loads(meta["config"]),
        "working_size": int(meta.get("working_size", 0)) or None,
        "card": card or {},
        "path": str(path),
    }
    return state, info


def trained_model(source: str | os.PathLike, method: str, expected: dict[str, Any], other: str = "",
                  user: str = "this") -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Weights of a trained ``method`` model to start another model from: (the inference network's
    float32 state, the trained state of its sub-module ``other``, e.g. ``"discriminator"``, when
    ``source`` is a training run, else empty). ``source``: a run folder or checkpoint (its EMA), a
    shipped name or a ``.safetensors`` file. Refuses a model of another method, or one whose config
    differs from ``expected`` (config key -> value) in any key (``user`` names the caller's config)."""
    path = Path(source)
    if path.is_dir() or path.suffix in (".pt", ".pth"):
        ckpt = load_checkpoint(path)
        kind, config, state = ckpt["method"], ckpt["config"], _float32(ckpt["ema"])
        other_state = network_state(ckpt, other) if other else {}
    else:
        state, info = load_inference_state(str(source))
        kind, config, other_state = info["method"], info["config"], {}
    if kind != method:
        raise ValueError(f"{source}: a {kind!r} model, not a {method!r}")
    for key, value in expected.items():
        if config[key] != value:
            raise ValueError(f"{source}: the {method}'s {key} is {config[key]}, {user} config has {value}")
    return state, other_state


def save_inference_weights(state: dict[str, torch.Tensor], path: str | os.PathLike, method: str, config: dict[str, Any],
                           working_size: int | None, name: str) -> dict[str, torch.Tensor]:
    """Write an inference network's state as float16 safetensors with tinct's metadata,
    atomically and world-readable (0644); returns the state as stored."""
    stored = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in state.items()}
    meta = {"method": method, "config": json.dumps(config), "working_size": str(working_size), "name": name}
    with atomic_path(path) as tmp:
        save_file(stored, str(tmp), metadata=meta)
        os.chmod(tmp, 0o644)
    return stored
