"""Device choice: the one place ``"auto"`` is resolved."""

from __future__ import annotations

import torch

__all__ = ["pick_device"]


def pick_device(name: str | torch.device = "auto") -> torch.device:
    """``"auto"``: the first CUDA GPU when there is one, else the CPU; otherwise ``torch.device(name)``
    (``"cpu"``, ``"cuda"``, ``"cuda:N"``)."""
    if str(name) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
