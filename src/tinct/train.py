"""The one training loop for every method.

Same code on CPU and GPU (bfloat16 autocast on CUDA), EMA of the inference network,
atomic resumable checkpoints with the config inside, sample grids (gray | output | ground
truth), a CSV log, a progress bar with images/s and ETA, DDP under ``torchrun``, and a
clean checkpoint-and-exit on SIGINT/SIGTERM.

Run directory layout::

    RUN_DIR/checkpoint.pt      latest checkpoint (method, config, step, weights, EMA, optimizers)
    RUN_DIR/config.yaml        the resolved method config
    RUN_DIR/log.csv            step, epoch, images_per_s, losses
    RUN_DIR/samples/step_N.png sample grids (see ColorizationMethod.preview)
"""

from __future__ import annotations

import contextlib
import copy
import csv
import dataclasses
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.distributed as dist
import yaml
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, Sampler
from tqdm import tqdm

from .checkpoint import CHECKPOINT_NAME, load_checkpoint, load_inference_state, save_checkpoint
from .data import ColorizationDataset, DataConfig
from .device import pick_device
from .features import FeatureCache, weights_fingerprint
from .io import atomic_path
from .methods import ColorizationMethod, build_method, get_method

log = logging.getLogger(__name__)

#: the old name of :func:`tinct.checkpoint.save_checkpoint`
save_checkpoint_atomic = save_checkpoint

__all__ = ["RunOptions", "train", "TrainingStopped", "load_checkpoint", "save_checkpoint_atomic", "resolve_config"]


@dataclass
class RunOptions:
    """Options of a training run that are not part of the model's config."""

    data: list[str]
    out: str
    val_data: list[str] = field(default_factory=list)
    device: str = "auto"
    workers: int = 2
    seed: int = 0
    resume: bool = False
    init_from: str | None = None
    checkpoint_every: int = 500
    sample_every: int = 500
    log_every: int = 20
    progress: bool = True
    threads: int = 0  # 0: leave torch's default


class EpochSampler(Sampler[int]):
    """Seeded permutation per epoch, split across DDP ranks, able to start mid-epoch."""

    def __init__(self, n: int, seed: int, rank: int = 0, world: int = 1):
        self.n, self.seed, self.rank, self.world = n, seed, rank, world
        self.epoch, self.start = 0, 0

    def set_position(self, epoch: int, start: int) -> None:
        self.epoch, self.start = epoch, start

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(self.n, generator=g).tolist()
        per_rank = self.n // self.world
        mine = order[self.rank * per_rank:(self.rank + 1) * per_rank]
        return iter(mine[self.start:])

    def __len__(self) -> int:
        return max(self.n // self.world - self.start, 0)


def resolve_config(method: str, yaml_file: str | None = None, overrides: list[str] | None = None) -> dict[str, Any]:
    """Config dict for ``method``: dataclass defaults < YAML file < ``key=value`` overrides."""
    cls = get_method(method).config_class
    values = dataclasses.asdict(cls())
    if yaml_file:
        with open(yaml_file, encoding="utf-8") as f:
            loaded = yaml.safe_load(f) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{yaml_file}: expected a mapping of config options")
        values.update(loaded)
    for item in overrides or []:
        if "=" not in item:
            raise ValueError(f"override {item!r}: expected key=value")
        key, raw = item.split("=", 1)
        if key not in values:
            raise ValueError(f"override {item!r}: {cls.__name__} has no option {key!r}")
        values[key] = yaml.safe_load(raw)
    return values


class EMA:
    """Exponential moving average of a module's parameters; buffers are copied.

    The decay warms up as ``min(decay, (1 + step) / (10 + step))`` (as TensorFlow's
    ExponentialMovingAverage with num_updates): with a fixed 0.999 a run of a few thousand
    steps would still average in the random initialization.
    """

    def __init__(self, module: torch.nn.Module, decay: float):
        self.decay = decay
        self.module = copy.deepcopy(module).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, module: torch.nn.Module, step: int) -> None:
        decay = min(self.decay, (1.0 + step) / (10.0 + step))
        for ema_p, p in zip(self.module.parameters(), module.parameters()):
            ema_p.lerp_(p.detach(), 1.0 - decay)
        for ema_b, b in zip(self.module.buffers(), module.buffers()):
            ema_b.copy_(b)


class _StopFlag:
    def __init__(self) -> None:
        self.raised: int | None = None

    def __call__(self, signum, _frame) -> None:
        self.raised = signum


@dataclass
class _Placement:
    """Where this process trains: its device, DDP rank and world size."""

    device: torch.device
    rank: int = 0
    world: int = 1

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _place(options: RunOptions) -> _Placement:
    """The device; under ``torchrun`` (WORLD_SIZE > 1) also the DDP process group (NCCL on CUDA, gloo on CPU)."""
    device = pick_device(options.device)
    if options.threads:
        torch.set_num_threads(options.threads)
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return _Placement(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    return _Placement(device, dist.get_rank(), dist.get_world_size())


def _resume_state(method_name: str, config: dict[str, Any], options: RunOptions, ckpt_path: Path,
                  overrides_on_resume: dict[str, Any] | None) -> tuple[dict[str, Any] | None, dict[str, Any], RunOptions]:
    """(checkpoint to resume or None, the config to train with, the run options): on ``--resume``
    the checkpoint's config updated by ``overrides_on_resume`` and, without ``--data``, its data."""
    resume_state = None
    if options.resume and ckpt_path.exists():
        resume_state = load_checkpoint(ckpt_path)
        if resume_state["method"] != method_name:
            raise ValueError(f"{ckpt_path}: checkpoint is for method {resume_state['method']!r}, not {method_name!r}")
        config = {**resume_state["config"], **(overrides_on_resume or {})}
        log.info("resuming %s from step %d", ckpt_path, resume_state["step"])
        if not options.data:  # --resume alone: the data the run was trained on
            options = dataclasses.replace(options, data=list(resume_state.get("data") or []))
            log.info("data from the checkpoint: %s", " ".join(options.data))
    elif ckpt_path.exists() and not options.resume:
        raise FileExistsError(f"{ckpt_path} exists: pass --resume to continue it, or choose another --out")
    if not options.data:
        raise ValueError("no training data: pass --data (a resumed run takes it from its checkpoint)")
    return resume_state, config, options


def _new_method(method_name: str, config: dict[str, Any], options: RunOptions, resume_state: dict[str, Any] | None,
                place: _Placement) -> ColorizationMethod:
    """The method to train, on its device: fresh (pretrained encoders, the data's statistics), from
    ``--init-from`` weights, or (resumed) to be loaded from the checkpoint."""
    torch.manual_seed(options.seed + place.rank)
    method = build_method(method_name, config, pretrained=resume_state is None)
    if options.init_from and resume_state is None:
        _init_from(method, options.init_from)
    elif resume_state is None:
        method.prepare_data(list(options.data), progress=options.progress and place.is_main)
    return method.to(place.device, memory_format=torch.channels_last).train()  # about 2x faster convs on CPU


def _preview_batch(cfg: Any, options: RunOptions) -> dict[str, torch.Tensor]:
    """8 images evenly spaced through the validation data (else the training data; shards are
    often sorted by class) for the sample grids."""
    preview = ColorizationDataset(options.val_data or options.data, DataConfig(image_size=cfg.image_size, min_colorfulness=cfg.min_colorfulness),
                                  train=False, quiet=not options.val_data)  # the training data is counted once, by its own dataset
    items = [preview[int(i)] for i in np.linspace(0, len(preview) - 1, min(8, len(preview))).round()]
    return {k: torch.stack([item[k] for item in items]) for k in ("gray", "rgb", "label")}


def _restore(method: ColorizationMethod, ema: "EMA", optimizers: dict[str, torch.optim.Optimizer],
             resume_state: dict[str, Any] | None) -> int:
    """Load a resumed run's networks, EMA and optimizers; returns the step to continue from (0 when new)."""
    if resume_state is None:
        return 0
    method.load_state_dict(resume_state["model"])
    ema.module.load_state_dict(resume_state["ema"])
    for name, opt in optimizers.items():
        opt.load_state_dict(resume_state["optimizers"][name])
    return resume_state["step"]


def _write_run_config(out: Path, method_name: str, cfg: Any) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "samples").mkdir(exist_ok=True)
    with open(out / "config.yaml", "w", encoding="utf-8") as f:
        yaml.safe_dump({"method": method_name, **dataclasses.asdict(cfg)}, f, sort_keys=False)


def _autocast(device: torch.device) -> Callable[[], Any]:
    """The ``autocast()`` a train step runs its forward passes in: bfloat16 on CUDA, a no-op on CPU."""
    if device.type == "cuda":
        return lambda: torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext


def _save(path: Path, method_name: str, method: ColorizationMethod, ema: "EMA", optimizers: dict[str, torch.optim.Optimizer],
          step: int, options: RunOptions, dataset: Any) -> None:
    """Write the run's checkpoint (format: :mod:`tinct.checkpoint`)."""
    save_checkpoint(
        {
            "method": method_name,
            "config": dataclasses.asdict(method.config),
            "step": step,
            "model": method.state_dict(),
            "ema": ema.module.state_dict(),
            "optimizers": {k: o.state_dict() for k, o in optimizers.items()},
            "data": [str(p) for p in options.data],
            "data_images": getattr(dataset, "images", len(dataset)),  # a feature cache holds several crops per image
            "data_dropped_gray": dataset.dropped_gray,
        },
        path,
    )


def _write_samples(path: Path, method: ColorizationMethod, ema: "EMA", batch: dict[str, torch.Tensor], device: torch.device) -> None:
    """The sample grid of the EMA network on the fixed preview batch (see ``ColorizationMethod.preview``)."""
    was_training = method.training
    method.eval()
    with torch.no_grad(), _swapped_inference_module(method, ema.module):
        grid = method.preview({k: v.to(device) for k, v in batch.items()})
    method.train(was_training)
    grid.save(path)


class _Log:
    """The CSV log (``log.csv``: step, epoch, images/s, the method's losses) and the progress bar,
    both on the main process only."""

    def __init__(self, out: Path, step: int, total: int, loss_names: tuple[str, ...], is_main: bool, progress: bool):
        self.loss_names = loss_names
        self.file = None
        self.writer: csv.DictWriter | None = None
        self.bar = None
        self.last, self.images = time.perf_counter(), 0
        if is_main:
            _truncate_log(out / "log.csv", step)
            self.file = open(out / "log.csv", "a", newline="", encoding="utf-8")
            if progress:
                self.bar = tqdm(total=total, initial=step, unit="step", file=sys.stderr, dynamic_ncols=True)

    def step(self, images: int) -> None:
        self.images += images
        if self.bar is not None:
            self.bar.update(1)

    def write(self, step: int, epoch: int, losses: dict[str, float]) -> None:
        if self.file is None:
            return
        now = time.perf_counter()
        rate = self.images / max(now - self.last, 1e-9)
        self.last, self.images = now, 0
        row = {"step": step, "epoch": epoch, "images_per_s": round(rate, 2), **{k: round(v, 5) for k, v in losses.items()}}
        if self.writer is None:
            self.writer = csv.DictWriter(self.file, fieldnames=["step", "epoch", "images_per_s", *self.loss_names], extrasaction="ignore")
            if self.file.tell() == 0:
                self.writer.writeheader()
        self.writer.writerow(row)
        self.file.flush()
        if self.bar is not None:
            self.bar.set_postfix(img_s=f"{rate:.0f}", **{k: f"{v:.3f}" for k, v in losses.items()})

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.file is not None:
            self.file.close()


def train(
    method_name: str, config: dict[str, Any], options: RunOptions, overrides_on_resume: dict[str, Any] | None = None
) -> Path:
    """Train ``method_name`` with ``config`` (see :func:`resolve_config`); returns the checkpoint path.

    On ``options.resume`` the checkpoint's config is used, updated by ``overrides_on_resume``
    (e.g. a larger ``steps`` to extend a finished run), and ``options.data``, when empty, is the
    checkpoint's. SIGINT or SIGTERM saves a checkpoint and raises :class:`TrainingStopped`.
    """
    place = _place(options)
    out = Path(options.out)
    ckpt_path = out / CHECKPOINT_NAME
    resume_state, config, options = _resume_state(method_name, config, options, ckpt_path, overrides_on_resume)
    method = _new_method(method_name, config, options, resume_state, place)
    cfg, device = method.config, place.device

    dataset = ColorizationDataset(options.data, DataConfig(image_size=cfg.image_size, min_colorfulness=cfg.min_colorfulness),
                                  train=True, seed=options.seed)
    preview_batch = _preview_batch(cfg, options)
    optimizers = method.make_optimizers()
    ema = EMA(method.inference_module(), cfg.ema_decay)
    step = _restore(method, ema, optimizers, resume_state)
    ema.module.to(device)
    if getattr(cfg, "feature_cache", ""):  # after loading: the cache is keyed by the encoder's trained weights
        dataset = _cached_features(method, dataset, cfg, device, options, place.distributed)
    if place.distributed:
        method.wrap_for_ddp(lambda m: DDP(m, device_ids=[device.index] if device.type == "cuda" else None))

    per_rank_batch = max(cfg.batch_size // place.world, 1)
    sampler = EpochSampler(len(dataset), options.seed, place.rank, place.world)
    steps_per_epoch = max(len(dataset) // place.world // per_rank_batch, 1)
    if place.is_main:
        _write_run_config(out, method_name, cfg)

    autocast = _autocast(device)

    def checkpoint() -> None:
        if place.is_main:
            _save(ckpt_path, method_name, method, ema, optimizers, step, options, dataset)

    def write_samples() -> None:
        if place.is_main:
            _write_samples(out / "samples" / f"step_{step:07d}.png", method, ema, preview_batch, device)

    stop = _StopFlag()
    previous_handlers = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    logger = _Log(out, step, cfg.steps, method.loss_names, place.is_main, options.progress)
    try:
        while step < cfg.steps and stop.raised is None:
            epoch, start = divmod(step, steps_per_epoch)
            dataset.set_epoch(epoch)
            sampler.set_position(epoch, start * per_rank_batch)
            loader = DataLoader(
                dataset, batch_size=per_rank_batch, sampler=sampler, num_workers=options.workers,
                drop_last=True, pin_memory=device.type == "cuda", persistent_workers=False,
                worker_init_fn=_ignore_stop_signals,
            )
            with _stop_signals_held():  # the workers start with them blocked, then ignore them
                batches = iter(loader)
            for batch in batches:
                batch = {k: _to_device(v, device) for k, v in batch.items()}
                losses = method.train_step(batch, optimizers, step, autocast)
                ema.update(method.inference_module(), step)
                step += 1
                logger.step(per_rank_batch * place.world)
                if step % options.log_every == 0 or step == cfg.steps:
                    logger.write(step, epoch, losses)
                if step % options.sample_every == 0:
                    write_samples()
                if step % options.checkpoint_every == 0:
                    checkpoint()
                if step >= cfg.steps or stop.raised is not None:
                    break
        checkpoint()
        write_samples()
        if stop.raised is not None and place.is_main:
            log.warning("stopped by signal %d at step %d; checkpoint saved to %s (resume with --resume)", stop.raised, step, ckpt_path)
    finally:
        for s, h in previous_handlers.items():
            signal.signal(s, h)
        logger.close()
        if place.distributed:
            dist.destroy_process_group()
    if stop.raised is not None:
        raise TrainingStopped(stop.raised, ckpt_path)
    return ckpt_path


class TrainingStopped(Exception):
    """Raised by :func:`train` after SIGINT or SIGTERM stopped the run (its checkpoint is saved)."""

    def __init__(self, signum: int, checkpoint: Path):
        self.signum, self.checkpoint = signum, checkpoint
        super().__init__(f"stopped by signal {signum}; checkpoint saved to {checkpoint}")


def _truncate_log(path: Path, step: int) -> None:
    """Drop log rows past ``step``: a run killed after its last checkpoint logged steps that
    the resumed run will train (and log) again."""
    if not path.exists():
        return
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    kept = lines[:1] + [line for line in lines[1:] if int(line.split(",", 1)[0]) <= step]
    if len(kept) != len(lines):
        with atomic_path(path) as tmp:
            tmp.write_text("".join(kept), encoding="utf-8")


_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


@contextlib.contextmanager
def _stop_signals_held():
    """Hold SIGINT and SIGTERM back (pending, not lost) while the loader forks its workers, which
    inherit the block: a signal in the instant before a worker's ``_ignore_stop_signals`` ran would
    kill it with the signal's default action."""
    signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)


def _ignore_stop_signals(_worker_id: int) -> None:
    # Ctrl-C reaches the whole process group: the loader workers must not die of it,
    # or the main process could not finish its step and save the checkpoint.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)  # held back while it was forked; now ignored


def _cached_features(method: ColorizationMethod, dataset: ColorizationDataset, cfg: Any, device: torch.device,
                     options: RunOptions, distributed: bool) -> FeatureCache:
    """The training set with the method's frozen encoder features computed once (see :mod:`tinct.features`)."""
    probe = torch.zeros(1, 1, 32, 32, device=device)
    if method.frozen_features(probe) is None:
        raise ValueError(f"{method.name}: feature_cache needs a frozen encoder (set freeze_encoder=true)")
    if distributed:
        raise ValueError("feature_cache is for single-process training (the decoder alone trains; no DDP needed)")
    encoder = {k.split("encoder.", 1)[1]: v for k, v in method.inference_module().state_dict().items() if "encoder." in k}
    key = weights_fingerprint(encoder)  # the same ImageNet encoder gives the same key in any method
    was_training = method.training
    method.eval()
    cache = FeatureCache(dataset, method.frozen_features, cfg.feature_cache, views=cfg.feature_cache_views, encoder_key=key,
                         device=device, workers=options.workers, progress=options.progress)
    method.train(was_training)
    return cache


def _to_device(t, device: torch.device):
    if isinstance(t, list):
        return [_to_device(x, device) for x in t]
    if t.dim() == 4:
        return t.to(device, non_blocking=True, memory_format=torch.channels_last)
    return t.to(device, non_blocking=True)


@contextlib.contextmanager
def _swapped_inference_module(method: ColorizationMethod, module: torch.nn.Module):
    """Temporarily run ``method`` with ``module`` (the EMA copy) as its inference network."""
    name = method.inference_module_name
    original = getattr(method, name)
    setattr(method, name, module)
    try:
        yield
    finally:
        setattr(method, name, original)


def _load_allowing_new_layers(module: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load trained weights into a module that may add layers (e.g. ``semantic_view`` on a
    model trained without it): those keep their initialization; weights the module does not
    have are an error."""
    missing, unexpected = module.load_state_dict(state, strict=False)
    if unexpected:
        raise ValueError(f"{source}: weights this model does not have: {', '.join(unexpected[:5])}"
                         f"{' ...' if len(unexpected) > 5 else ''} (a different method or config?)")
    if missing:
        log.warning("%s has no weights for %s; they start from their initialization", source, ", ".join(missing[:8]))


def _init_from(method: ColorizationMethod, source: str) -> None:
    """Start from trained weights (a checkpoint, run dir or exported .safetensors) to fine-tune."""
    if str(source).endswith(".safetensors") or not Path(source).exists():
        state, _meta = load_inference_state(source)
        _load_allowing_new_layers(method.inference_module(), state, source)
        log.info("initialized %s from %s", method.inference_module_name, source)
        return
    ckpt = load_checkpoint(source)
    if not isinstance(ckpt, dict) or "method" not in ckpt or "ema" not in ckpt:
        raise ValueError(f"{source}: not a tinct training checkpoint (expected 'method' and 'ema' entries)")
    if ckpt["method"] != method.name:
        raise ValueError(f"{source}: checkpoint is for method {ckpt['method']!r}, not {method.name!r}")
    if "model" in ckpt:
        _load_allowing_new_layers(method, ckpt["model"], source)
    else:  # an inference-only checkpoint: the other networks (e.g. the discriminator) start fresh
        log.warning("%s holds only the %s weights; the other networks start fresh", source, method.inference_module_name)
    _load_allowing_new_layers(method.inference_module(), ckpt["ema"], source)
    log.info("initialized from %s (step %s)", source, ckpt.get("step", "?"))
