"""A training set whose frozen-encoder features are computed once and kept on disk.

When a method's encoder is frozen (``cic`` with ``network: unet``, ``unet_gan`` with
``freeze_encoder``), its features of a training crop never change, so computing them at
every step wastes most of the CPU. :class:`FeatureCache` runs the encoder once over ``views``
random crops of every training image (the same seeded crops the plain dataset would give in
epochs 0 .. views-1) and stores the crops (uint8) and the features (float16) as ``.npy``
memory maps; training then only runs the decoder. The folder is keyed by a fingerprint of the
data, the crop settings and the encoder's weights, so a resumed run (or a second run on the
same data and encoder) reuses it and a stale cache is never used.

Folder layout, in ``FOLDER/FINGERPRINT/``: ``meta.json`` (written last: a folder without it is incomplete and rebuilt),
``rgb.npy`` [N, 3, S, S] uint8, ``label.npy`` [N] int64, ``features_K.npy`` [N, C_K, h_K, w_K]
float16, N = images x views.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .color import gray_to_lightness, luminance
from .data import ColorizationDataset
from .io import atomic_path

log = logging.getLogger(__name__)

__all__ = ["FeatureCache", "weights_fingerprint"]

_FORMAT = "tinct-feature-cache-v1"


def weights_fingerprint(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 (first 16 hex digits) of named tensors (e.g. a frozen encoder's state dict)."""
    h = hashlib.sha256()
    for name, t in sorted(state.items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


class FeatureCache(Dataset):
    """Samples of ``base`` (a training :class:`ColorizationDataset`) with the frozen encoder's features.

    Args:
        base: the training dataset (random crops, seeded per epoch).
        encode: L [B, 1, S, S] in [0, 100] -> list of feature tensors [B, C_k, h_k, w_k].
        folder: where caches live; this one is ``folder/FINGERPRINT`` (built when absent or incomplete).
        views: crops per image (epochs 0 .. views-1 of ``base``).
        encoder_key: fingerprint of the encoder's weights (:func:`weights_fingerprint`).
    Items: ``rgb`` [3, S, S] and ``gray`` [1, S, S] in [0, 1], ``label`` (int64), ``features``
    (list of float32 tensors [C_k, h_k, w_k]).
    """

    def __init__(self, base: ColorizationDataset, encode: Callable[[torch.Tensor], list[torch.Tensor]], folder: str | os.PathLike,
                 views: int = 1, encoder_key: str = "", device: torch.device | str = "cpu", batch_size: int = 64,
                 workers: int = 0, progress: bool = False):
        if views < 1:
            raise ValueError(f"feature cache: views must be >= 1, got {views}")
        self.base = base
        self.images = len(base)
        self.dropped_gray = base.dropped_gray
        self.views = views
        key = self._fingerprint(base, views, encoder_key)
        # one sub-folder per fingerprint: runs on other data or encoders never clobber each other's cache
        self.folder = Path(folder) / key[:16]
        meta_path = self.folder / "meta.json"
        if not meta_path.exists():
            self._build(encode, key, torch.device(device), batch_size, workers, progress)
        else:
            log.info("feature cache: reusing %s", self.folder)
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        self.n = meta["n"]
        self.rgb = np.load(self.folder / "rgb.npy", mmap_mode="r")
        self.labels = np.load(self.folder / "label.npy", mmap_mode="r")
        self.features = [np.load(self.folder / f"features_{k}.npy", mmap_mode="r") for k in range(meta["levels"])]

    @staticmethod
    def _fingerprint(base: ColorizationDataset, views: int, encoder_key: str) -> str:
        h = hashlib.sha256(_FORMAT.encode())
        c = base.config
        h.update(json.dumps([c.image_size, list(c.crop_scale), list(c.crop_ratio), c.flip, base.seed, views, encoder_key]).encode())
        for rec in base.records:
            h.update(f"{os.path.abspath(rec.path)}|{rec.key}|{rec.label}\n".encode())
        return h.hexdigest()

    def _build(self, encode, key: str, device: torch.device, batch_size: int, workers: int, progress: bool) -> None:
        if self.folder.exists():  # an interrupted build
            shutil.rmtree(self.folder)
        self.folder.mkdir(parents=True)
        n = len(self.base) * self.views
        s = self.base.config.image_size
        log.info("feature cache: encoding %d crops (%d images x %d views) into %s", n, len(self.base), self.views, self.folder)
        rgb_mm = np.lib.format.open_memmap(self.folder / "rgb.npy", mode="w+", dtype=np.uint8, shape=(n, 3, s, s))
        label_mm = np.lib.format.open_memmap(self.folder / "label.npy", mode="w+", dtype=np.int64, shape=(n,))
        feature_mms: list[np.memmap] = []
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=n, desc="feature cache", unit="img", file=sys.stderr, dynamic_ncols=True)
        pos = 0
        for view in range(self.views):
            self.base.set_epoch(view)
            loader = DataLoader(self.base, batch_size=batch_size, shuffle=False, num_workers=workers)
            for batch in loader:
                b = batch["rgb"].shape[0]
                with torch.no_grad():
                    feats = encode(gray_to_lightness(batch["gray"].to(device)))
                if not feature_mms:
                    for k, f in enumerate(feats):
                        feature_mms.append(np.lib.format.open_memmap(
                            self.folder / f"features_{k}.npy", mode="w+", dtype=np.float16, shape=(n, *f.shape[1:])))
                for mm, f in zip(feature_mms, feats):
                    mm[pos:pos + b] = f.float().cpu().numpy().astype(np.float16)
                rgb_mm[pos:pos + b] = (batch["rgb"].numpy() * 255.0 + 0.5).astype(np.uint8)
                label_mm[pos:pos + b] = batch["label"].numpy()
                pos += b
                if bar is not None:
                    bar.update(b)
        if bar is not None:
            bar.close()
        for mm in (rgb_mm, label_mm, *feature_mms):
            mm.flush()
        del rgb_mm, label_mm, feature_mms
        meta = {"format": _FORMAT, "key": key, "n": n, "levels": len(feats), "image_size": s, "views": self.views}
        with atomic_path(self.folder / "meta.json") as tmp:
            tmp.write_text(json.dumps(meta), encoding="utf-8")

    def set_epoch(self, epoch: int) -> None:
        """The crops are fixed; every epoch is one pass over all cached views."""

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> dict:
        rgb = torch.from_numpy(self.rgb[index].astype(np.float32) / 255.0)
        gray = luminance(rgb).clamp(0, 1)
        features = [torch.from_numpy(f[index].astype(np.float32)) for f in self.features]
        return {"rgb": rgb, "gray": gray, "label": torch.tensor(int(self.labels[index])), "features": features}
