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

import argparse
import dataclasses
import functools
import importlib
import inspect
import pkgutil
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import nn

from ..color import gray_to_lightness, lab_to_rgb
from ..nets.efficientnet import shared_classifier

__all__ = ["ColorizationMethod", "TrainConfig", "InferenceOption", "MethodCommand", "register", "get_method", "method_names", "build_method",
           "sample_grid", "image_grid", "labelled_strip", "LABEL_HEIGHT", "declared_options", "method_commands"]

_REGISTRY: dict[str, type["ColorizationMethod"]] = {}
_LOADED: list[bool] = []  # non-empty once every method module is imported


@dataclasses.dataclass(frozen=True)
class InferenceOption:
    """One user-level inference option a method declares (:attr:`ColorizationMethod.inference_options`).

    The web page (:mod:`tinct.serve`) builds its controls from these, so a new method needs no
    page change. ``name`` is the keyword of :meth:`tinct.Colorizer.colorize` (``"class"``,
    ``"reference"``, ``"temperature"``...); ``type`` is ``"float"``, ``"int"``, ``"str"``,
    ``"class"`` (an ImageNet class name or index) or ``"image"`` (a color image file);
    ``default`` None means "the method decides" (e.g. the class read from the input).
    :meth:`tinct.Colorizer.check_options` refuses undeclared names, wrong types and values
    outside ``min``..``max``.
    """

    name: str
    type: str
    default: Any = None
    help: str = ""
    choices: tuple[Any, ...] = ()
    min: float | None = None
    max: float | None = None
    step: float | None = None

    @property
    def keyword(self) -> str:
        """The :meth:`ColorizationMethod.predict_ab` keyword the option reaches the method as:
        a ``class`` option resolved to an ImageNet index as ``NAME_index``, an ``image`` option
        read as ``NAME_rgb`` (sRGB [1, 3, h, w] in [0, 1]), any other as ``NAME``."""
        return {"class": f"{self.name}_index", "image": f"{self.name}_rgb"}.get(self.type, self.name)


@dataclasses.dataclass(frozen=True)
class MethodCommand:
    """A command only one method has, declared by the method (:attr:`ColorizationMethod.commands`)
    so that the CLI names no method: ``tinct NAME ...``, or ``tinct figure NAME ...`` when ``figure``.

    ``add_arguments(parser)`` declares its arguments; ``run(args, model)`` does the work and returns
    the exit status. With ``model_default`` set the CLI adds ``--model`` (that default; ``""``:
    required) and
    ``--device``, loads the model (a :class:`tinct.Colorizer` for a colorizing method, else the
    method itself, ready for inference), refuses one of another method, and passes it as
    ``model``; without, ``model`` is None. ``aliases`` are deprecated spellings of ``name``.
    """

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace, Any], int]
    figure: bool = False
    model_default: str | None = None
    aliases: tuple[str, ...] = ()


@dataclasses.dataclass
class TrainConfig:
    """What the training loop (:mod:`tinct.train`) reads from a config: every method's config
    dataclass extends it, adding its architecture, loss and optimizer fields (and redeclaring a
    default here when its own differs)."""

    image_size: int = 64  # square training crops, px; the exported model's default working size
    batch_size: int = 32
    steps: int = 20000
    ema_decay: float = 0.999  # EMA of the inference network (warmed up, see tinct.train.EMA)
    min_colorfulness: float = 8.0  # training photos below this Hasler-Suesstrunk colorfulness are dropped


class ColorizationMethod(nn.Module):
    """Base class: networks, losses and a train step for one colorization method."""

    name: str = ""
    config_class: type = object
    #: the sub-module whose EMA weights are exported and used for inference
    inference_module_name: str = "generator"
    #: scalar losses train_step reports (the CSV log's columns)
    loss_names: tuple[str, ...] = ()
    #: False for generative priors, which cannot colorize (``tinct colorize``/``eval`` refuse them)
    is_colorizer: bool = True
    #: N > 0: the pipeline passes ``predict_ab`` a ``semantic_gray`` [1, 1, N, N] view of the whole
    #: full-resolution input (in [0, 1]) for the method's recognition branch
    semantic_view: int = 0
    #: the user-level inference options this method accepts (see :class:`InferenceOption`)
    inference_options: tuple[InferenceOption, ...] = ()
    #: commands only this method has (see :class:`MethodCommand`)
    commands: tuple[MethodCommand, ...] = ()
    #: a tiny config (random weights, CPU, seconds) for the contract test over every method
    #: (``tests/test_methods_contract.py``); empty: the method is not covered there
    test_config: dict[str, Any] = {}

    def __init__(self, config: Any, inference_only: bool = False):
        super().__init__()
        self.config = config
        #: built for inference (:func:`tinct.weights.load_model`): only the inference network
        #: exists; the networks only training needs (discriminators) are not built
        self.inference_only = inference_only

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Make every method's ``predict_ab`` refuse keywords it neither names nor declares
        (``predict_ab(L, temprature=0)`` raises instead of doing nothing)."""
        super().__init_subclass__(**kwargs)
        if "predict_ab" in cls.__dict__:
            cls.predict_ab = _checked_keywords(cls.__dict__["predict_ab"])

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

    def inference_variants(self, options: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        """The outputs one input yields: ``[(file-name suffix, predict_ab options), ...]``.

        One output by default; methods with several (e.g. BigColor's ``samples`` and
        ``top_k``) expand the options here.
        """
        return [("", options)]

    def preview(self, batch: dict[str, torch.Tensor]) -> Image.Image:
        """The training log's sample grid for a fixed batch (rows: gray | output | ground truth).

        ``batch`` holds ``gray`` [B, 1, H, W] and ``rgb`` [B, 3, H, W] in [0, 1] and ``label`` [B].
        """
        ab = self.predict_ab(gray_to_lightness(batch["gray"])).float()
        return sample_grid(batch["gray"].cpu(), ab.cpu(), batch["rgb"].cpu())

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

    def frozen_features(self, lightness: torch.Tensor) -> list[torch.Tensor] | None:
        """Features of a frozen encoder for L [B, 1, H, W] in [0, 100], which ``train_step`` then
        accepts as ``batch["features"]`` instead of running the encoder (the training feature
        cache, :mod:`tinct.features`); None when nothing is frozen (the default)."""
        return None

    def pretrained_weights(self) -> dict[str, torch.Tensor]:
        """The inference module's weights that start from a pretrained network, at their
        pretrained values (names as in its state dict), for ``tinct export --pretrained-mix``.
        Default: none."""
        return {}

    def wrap_for_ddp(self, wrap: Callable[[nn.Module], nn.Module]) -> None:
        """Wrap the trained sub-modules for DistributedDataParallel (default: none)."""

    def frozen_network(self, name: str, factory: Callable[[], nn.Module], device: torch.device) -> nn.Module:
        """A frozen pretrained helper (classifier, perceptual features), built on first use.

        Kept outside the module tree (``__dict__``, not a sub-module), so it is in no
        checkpoint, optimizer, DDP wrapper or ``.to()`` of the method.
        """
        store = self.__dict__.setdefault("_frozen_networks", {})
        if name not in store:
            store[name] = factory().to(device)
        return store[name]

    def classify(self, rgb: torch.Tensor) -> torch.Tensor:
        """Class probabilities [B, 1000] of gray [B, 1, H, W] or color [B, 3, H, W] images in [0, 1]
        by the frozen EfficientNet-Lite0 classifier (the papers' off-the-shelf classifier)."""
        return self.frozen_network("classifier", shared_classifier, rgb.device)(rgb)

    def labels_or_predicted(self, labels: torch.Tensor, rgb: torch.Tensor) -> torch.Tensor:
        """Class indices [B]: the data's ``labels``, or the classifier's prediction on the color
        image ``rgb`` [B, 3, H, W] in [0, 1] where a label is unknown (-1)."""
        if (labels >= 0).all():
            return labels
        return torch.where(labels >= 0, labels, self.classify(rgb).argmax(dim=1))

    def inference_module(self) -> nn.Module:
        return getattr(self, self.inference_module_name)


#: keywords the pipeline passes to any method (see ``semantic_view``)
PIPELINE_KEYWORDS = frozenset({"semantic_gray"})


def _checked_keywords(predict_ab: Callable) -> Callable:
    named = {p.name for p in inspect.signature(predict_ab).parameters.values()
             if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}

    @functools.wraps(predict_ab)
    def checked(self: "ColorizationMethod", lightness: torch.Tensor, **options: Any) -> torch.Tensor:
        known = named | PIPELINE_KEYWORDS | {o.keyword for o in self.inference_options}
        unknown = sorted(set(options) - known)
        if unknown:
            declared = ", ".join(o.name for o in self.inference_options) or "none"
            raise TypeError(f"{self.name}: no inference option {unknown[0]!r}; its options: {declared}")
        return predict_ab(self, lightness, **options)

    return checked


def register(cls: type[ColorizationMethod]) -> type[ColorizationMethod]:
    """Class decorator: make a method available by its ``name``."""
    _REGISTRY[cls.name] = cls
    return cls


def _load_builtin() -> None:
    """Import every module of this package once: each registers its method (``@register``), so a
    new method is a new file here and nothing else. Imported on first use, not at package import,
    because the method modules import this package's base class."""
    if _LOADED:
        return
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")
    _LOADED.append(True)


def method_names() -> list[str]:
    _load_builtin()
    return sorted(_REGISTRY)


def get_method(name: str) -> type[ColorizationMethod]:
    _load_builtin()
    if name not in _REGISTRY:
        raise KeyError(f"unknown method {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def declared_options() -> dict[str, tuple[InferenceOption, list[str]]]:
    """Every inference option any registered method declares: name -> (the first declaration,
    the names of the methods that declare it). The CLI's flags are generated from it."""
    found: dict[str, tuple[InferenceOption, list[str]]] = {}
    for name in method_names():
        for opt in get_method(name).inference_options:
            first, owners = found.setdefault(opt.name, (opt, []))
            if opt.type != first.type:
                raise TypeError(f"method {name!r} declares option {opt.name!r} as {opt.type}, "
                                f"method {owners[0]!r} as {first.type}: one name, one type")
            owners.append(name)
    return found


def method_commands() -> list[tuple[type[ColorizationMethod], MethodCommand]]:
    """(method class, command) for every command a registered method declares."""
    return [(get_method(name), cmd) for name in method_names() for cmd in get_method(name).commands]


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
        clean[key] = _coerce_scalar(cls.__name__, key, value, default)
    return cls(**clean)


def _coerce_scalar(owner: str, key: str, value: Any, default: Any) -> Any:
    """Match a scalar option to its default's type. YAML reads ``1e-4`` (no dot) as a string
    and ``3`` as an int, so ``--set lr=1e-4`` must become a float here, not inside the optimizer."""
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ValueError(f"{owner} option {key!r}: expected true or false, got {value!r}")
        return value
    if not isinstance(default, (int, float)) or isinstance(value, (list, tuple)):
        return value  # strings, paths, tuples: as given
    kind = type(default)
    if isinstance(value, kind) and not isinstance(value, bool):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"{owner} option {key!r}: expected {kind.__name__}, got {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{owner} option {key!r}: expected {kind.__name__}, got {value!r}") from None
    if kind is int:
        if not number.is_integer():
            raise ValueError(f"{owner} option {key!r}: expected an integer, got {value!r}")
        return int(number)
    return number


def build_method(name: str, config: dict[str, Any] | None = None, pretrained: bool = True,
                 inference_only: bool = False) -> ColorizationMethod:
    """Instantiate a registered method; ``pretrained`` loads ImageNet weights into its encoder;
    ``inference_only`` builds only its inference network (for methods whose ``__init__`` takes it)."""
    cls = get_method(name)
    cfg = config_from_dict(cls.config_class, config or {})
    if inference_only and "inference_only" in inspect.signature(cls.__init__).parameters:
        return cls(cfg, pretrained=pretrained, inference_only=True)
    return cls(cfg, pretrained=pretrained)


def image_grid(rows: list[torch.Tensor]) -> Image.Image:
    """Stack images into a grid: ``rows`` is a list of [N, 3, H, W] sRGB tensors in [0, 1]; row i
    of the picture holds the i-th image of every tensor, side by side."""
    row_images = torch.cat([r.detach().float().cpu().clamp(0, 1) for r in rows], dim=3)  # [N, 3, H, k W]
    grid = torch.cat(list(row_images), dim=1)  # [3, N H, k W]
    return Image.fromarray((grid.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8))


def sample_grid(gray: torch.Tensor, ab: torch.Tensor, rgb: torch.Tensor) -> Image.Image:
    """Rows of gray | output | ground truth. gray [B,1,H,W] and rgb [B,3,H,W] in [0,1], ab [B,2,H,W]."""
    out = lab_to_rgb(torch.cat([gray_to_lightness(gray), ab], 1))
    return image_grid([gray.expand(-1, 3, -1, -1), out, rgb])


#: height of the label row of :func:`labelled_strip`
LABEL_HEIGHT = 18


def labelled_strip(images: list[np.ndarray], labels: list[str], pad: int = 4) -> Image.Image:
    """Place uint8 RGB images [H, W, 3] (same size) side by side, each labelled on top."""
    h, w = images[0].shape[:2]
    strip = Image.new("RGB", (pad + len(images) * (w + pad), LABEL_HEIGHT + h + pad), "white")
    draw = ImageDraw.Draw(strip)
    for i, (img, label) in enumerate(zip(images, labels)):
        x = pad + i * (w + pad)
        draw.text((x + 2, 3), label, fill="black")
        strip.paste(Image.fromarray(img), (x, LABEL_HEIGHT))
    return strip
