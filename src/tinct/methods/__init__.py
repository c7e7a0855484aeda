"""Colorization methods, one file per family, registered by name.

Every method is a :class:`ColorizationMethod`: an ``nn.Module`` built from a config
dataclass that

- predicts chroma for a gray image (:meth:`ColorizationMethod.predict_ab`), the one
  inference interface the pipeline, CLI and evaluation use;
- trains through :meth:`ColorizationMethod.train_step`, called by the single loop in
  :mod:`tinct.train`;
- names the sub-module whose (EMA) weights are shipped (:attr:`inference_module_name`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import torch
from torch import nn

__all__ = ["ColorizationMethod", "register", "get_method", "method_names", "build_method"]

_REGISTRY: dict[str, type["ColorizationMethod"]] = {}


class ColorizationMethod(nn.Module):
    """Base class: networks, losses and a train step for one colorization method."""

    name: str = ""
    config_class: type = object
    #: the sub-module whose EMA weights are exported and used for inference
    inference_module_name: str = "generator"
    #: scalar losses train_step reports (the CSV log's columns)
    loss_names: tuple[str, ...] = ()

    def __init__(self, config: Any):
        super().__init__()
        self.config = config

    # --- inference -------------------------------------------------------------------
    def predict_ab(self, lightness: torch.Tensor, **options: Any) -> torch.Tensor:
        """Chroma for gray input.

        Args:
            lightness: [B, 1, H, W], Lab L in [0, 100]; H and W any size the method accepts.
            options: method-specific inference options (ignored when unknown).
        Returns:
            ab [B, 2, H, W] in [-110, 110].
        """
        raise NotImplementedError

    # --- training --------------------------------------------------------------------
    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        raise NotImplementedError

    def train_step(
        self, batch: dict[str, torch.Tensor], optimizers: dict[str, torch.optim.Optimizer], step: int,
        autocast: Callable[[], Any],
    ) -> dict[str, float]:
        """One optimization step on ``batch`` (see :mod:`tinct.data`); returns scalar losses.

        ``autocast()`` is a context manager: bfloat16 autocast on CUDA, a no-op on CPU.
        """
        raise NotImplementedError

    def prepare_data(self, sources: list[str], progress: bool = False) -> None:
        """Called once before a new run trains (not on resume): statistics the method needs
        from the training data (e.g. CIC's ab prior). Default: nothing."""

    def wrap_for_ddp(self, wrap: Callable[[nn.Module], nn.Module]) -> None:
        """Wrap the trained sub-modules for DistributedDataParallel (default: none)."""

    def inference_module(self) -> nn.Module:
        return getattr(self, self.inference_module_name)


def register(cls: type[ColorizationMethod]) -> type[ColorizationMethod]:
    """Class decorator: make a method available by its ``name``."""
    _REGISTRY[cls.name] = cls
    return cls


def _load_builtin() -> None:
    from . import cic, unet_gan  # noqa: F401


def method_names() -> list[str]:
    _load_builtin()
    return sorted(_REGISTRY)


def get_method(name: str) -> type[ColorizationMethod]:
    _load_builtin()
    if name not in _REGISTRY:
        raise KeyError(f"unknown method {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def config_from_dict(cls: type, values: dict[str, Any]) -> Any:
    """Build a config dataclass from a dict, rejecting unknown keys, coercing lists to tuples."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(values) - set(fields)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} option(s): {', '.join(sorted(unknown))}")
    clean = {}
    for key, value in values.items():
        default = fields[key].default
        if isinstance(value, list) and (isinstance(default, tuple) or fields[key].default_factory is not dataclasses.MISSING):
            value = tuple(value)
        clean[key] = value
    return cls(**clean)


def build_method(name: str, config: dict[str, Any] | None = None, pretrained: bool = True) -> ColorizationMethod:
    """Instantiate a registered method; ``pretrained`` loads ImageNet weights into its encoder."""
    cls = get_method(name)
    cfg = config_from_dict(cls.config_class, config or {})
    return cls(cfg, pretrained=pretrained)
