"""Shipped model weights: ``NAME.safetensors`` + ``NAME.json`` (card data) + ``NAME.md``.

The safetensors file holds the inference network's weights (float16) and, in its
metadata, the method name and config. ``NAME.json`` records the file's SHA-256, which
is verified before every load; a mismatch (a corrupt or altered file) is a clear error.
"""

from __future__ import annotations

import datetime
import json
import os
from pathlib import Path
from typing import Any

import torch

from ..checkpoint import (DEFAULT_MODEL, WeightsError, load_checkpoint, load_inference_state, resolve_model,
                          save_inference_weights, sha256_file, shipped_cards, weights_dir)
from ..io import write_text_atomic
from ..methods import build_method

__all__ = [
    "DEFAULT_MODEL", "WeightsError", "resolve_model", "load_model", "load_inference_state",
    "list_models", "export_run", "sha256_file", "weights_dir", "models_markdown",
]


def list_models() -> list[dict[str, Any]]:
    """Card data of every model shipped in the package."""
    return shipped_cards()


def load_model(name_or_path: str = "default", device: str | torch.device = "cpu"):
    """Build a model ready for inference: a shipped name, an exported ``.safetensors`` or a
    training run (folder or checkpoint, its EMA weights); returns (method, info)."""
    state, info = load_inference_state(name_or_path)
    method = build_method(info["method"], info["config"], pretrained=False, inference_only=True)
    try:
        method.inference_module().load_state_dict(state)
    except RuntimeError as exc:  # missing, unexpected or mis-shaped tensors
        raise WeightsError(f"{info['path']}: weights do not fit a {info['method']!r} model ({str(exc).splitlines()[0]})") from None
    method.to(device).eval()
    if method.is_colorizer:
        with torch.inference_mode():
            probe = method.predict_ab(torch.linspace(0, 100, 48 * 48, device=device).view(1, 1, 48, 48))
        if not torch.isfinite(probe).all():
            raise WeightsError(f"{info['path']}: the model gives NaN or infinite colors (damaged weights)")
    return method, info


def export_run(
    run: str | os.PathLike, name: str, dest: str | os.PathLike | None = None,
    metrics: dict[str, Any] | None = None, working_size: int | None = None, notes: str = "",
    pretrained_mix: float | None = None, force: bool = False,
) -> Path:
    """Write the EMA inference weights of a training run as ``DEST/NAME.safetensors`` (fp16)
    with ``NAME.json`` and ``NAME.md`` model cards; returns the weights path.

    ``dest`` defaults to the current folder, never the installed package; existing files, and
    the package's own weights folder, need ``force`` (how maintainers ship a model:
    ``--dest src/tinct/weights --force``). Files are written world-readable (0644).

    ``pretrained_mix`` = alpha in (0, 1): a weight-space ensemble of the fine-tuned and the
    pretrained weights (WiSE-FT, Wortsman et al. 2022): every weight that starts from a
    pretrained network (the method's ``pretrained_weights``) becomes
    ``alpha * trained + (1 - alpha) * pretrained``; the others stay as trained. Fine-tuning on
    a narrow dataset moves the pretrained encoder away from what it knew; mixing some of it
    back makes a model more robust on images unlike the training data.
    """
    dest = Path(dest) if dest else Path.cwd()
    targets = [dest / f"{name}{suffix}" for suffix in (".safetensors", ".json", ".md")]
    existing = [str(t) for t in targets if t.exists()]
    if existing and not force:
        raise FileExistsError(f"{existing[0]} exists: pass --force to overwrite it")
    if not force and dest.resolve() == weights_dir().resolve():
        raise FileExistsError(f"{dest}: that is the installed package's weights folder; pass --force to write there")
    ckpt = load_checkpoint(run)
    dest.mkdir(parents=True, exist_ok=True)
    ema = ckpt["ema"]
    config = ckpt["config"]
    if pretrained_mix is not None:
        ema = _mix_with_pretrained(ema, ckpt["method"], config, pretrained_mix)
    working_size = working_size or config.get("image_size")
    path = dest / f"{name}.safetensors"
    state = save_inference_weights(ema, path, ckpt["method"], config, working_size, name)
    n_params = sum(v.numel() for k, v in state.items() if v.is_floating_point() and "running_" not in k)
    card = {
        "name": name,
        "method": ckpt["method"],
        "parameters": n_params,
        "working_size": working_size,
        "file": path.name,
        "sha256": sha256_file(path),
        "bytes": path.stat().st_size,
        "dtype": "float16",
        "exported": datetime.date.today().isoformat(),
        "training": {
            "data": ckpt.get("data"),
            "images": ckpt.get("data_images"),
            "dropped_low_colorfulness": ckpt.get("data_dropped_gray"),
            "steps": ckpt["step"],
            "batch_size": config.get("batch_size"),
            "image_size": config.get("image_size"),
        },
        "config": config,
        "pretrained_mix": pretrained_mix,
        "metrics": metrics or {},
        "notes": notes,
    }
    write_text_atomic(dest / f"{name}.json", json.dumps(card, indent=2) + "\n")
    write_text_atomic(dest / f"{name}.md", render_card(card))
    return path


def _mix_with_pretrained(state: dict[str, torch.Tensor], method_name: str, config: dict, alpha: float) -> dict[str, torch.Tensor]:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"pretrained mix must be between 0 and 1 (exclusive), got {alpha}")
    pretrained = build_method(method_name, config, pretrained=False, inference_only=True).pretrained_weights()
    if not pretrained:
        raise ValueError(f"method {method_name!r} has no pretrained weights to mix with")
    mixed = dict(state)
    for key, start in pretrained.items():
        if state[key].is_floating_point():
            mixed[key] = alpha * state[key].float() + (1.0 - alpha) * start.float()
    return mixed


def models_markdown(cards: list[dict[str, Any]]) -> str:
    """Markdown table of shipped models with the dev-set metrics stored in their cards
    (which ``tinct export --metrics`` copies from ``tinct eval --json``)."""
    head = "| model | method | parameters | training data | working size | PSNR | SSIM | colorfulness (gt) | top-1 (gray / gt) | recovery (95% CI) | FD-EffNet (gray) | AuC raw / rebalanced | hue agreement |"
    lines = [head]
    lines.append("|" + "---|" * (head.count("|") - 1))
    for card in cards:
        m = card.get("metrics") or {}
        rows = m.get("rows", {})
        row = rows.get(card["name"]) or next((v for k, v in rows.items() if k not in ("gray", "gt")), {})
        gray, gt = rows.get("gray", {}), rows.get("gt", {})
        t = card["training"]
        data = ", ".join(sorted({Path(p).parent.name or Path(p).name for p in (t.get("data") or [])})) or "?"
        cells = [
            f"`{card['name']}`", card["method"], f"{card['parameters'] / 1e6:.1f} M",
            f"{data} ({t.get('images')} images, {t['steps']} steps of {t['batch_size']} at {t['image_size']} px)",
            str(card["working_size"]), format_value(row.get("psnr")), format_value(row.get("ssim")),
            f"{format_value(row.get('colorfulness'))} ({format_value(gt.get('colorfulness'))})",
            f"{format_value(row.get('top1'))} ({format_value(gray.get('top1'))} / {format_value(gt.get('top1'))})",
            format_value(row.get("recovery")) + (f" ({format_value(row['recovery_ci95'])})" if row.get("recovery_ci95") else ""),
            f"{format_value(row.get('fd_effnet'))} ({format_value(gray.get('fd_effnet'))})",
            f"{format_value(row.get('auc_raw'))} / {format_value(row.get('auc_rebalanced'))}",
            format_value(row.get("hue_agreement")),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    if any(c.get("metrics", {}).get("command") for c in cards):
        lines.append("")
        for c in cards:
            if c.get("metrics", {}).get("command"):
                lines.append(f"`{c['name']}` measured with `{c['metrics']['command']}` (n = {c['metrics'].get('n')}, gray skipped = {c['metrics'].get('skipped')}).")
    return "\n".join(lines)


README_TABLE_START = "<!-- models-table:start (generated by `tinct models --readme README.md`) -->"
README_TABLE_END = "<!-- models-table:end -->"


def update_readme_table(readme: str | Path, table: str) -> None:
    """Replace the text between the model-table markers of a README (written atomically)."""
    path = Path(readme)
    text = path.read_text(encoding="utf-8")
    start, end = text.find(README_TABLE_START), text.find(README_TABLE_END)
    if start < 0 or end < start:
        raise ValueError(f"{path}: no model-table markers ({README_TABLE_START!r} ... {README_TABLE_END!r})")
    new = text[: start + len(README_TABLE_START)] + "\n" + table + "\n" + text[end:]
    write_text_atomic(path, new)


def render_card(card: dict[str, Any]) -> str:
    """Markdown model card from card data."""
    t = card["training"]
    lines = [
        f"# Model card: `{card['name']}`",
        "",
        f"- Method: `{card['method']}`",
        f"- Parameters: {card['parameters']:,} (stored as {card['dtype']}, {card['bytes'] / 1e6:.1f} MB)",
        f"- SHA-256: `{card['sha256']}`",
        f"- Default working resolution (short side): {card['working_size']} px",
        f"- Exported: {card['exported']}",
        "",
        "## Training",
        "",
        f"- Data: {', '.join(_short_path(p) for p in (t.get('data') or [])) or 'unknown'}",
        f"- Images after the low-colorfulness filter: {t.get('images')} ({t.get('dropped_low_colorfulness')} dropped)",
        f"- Steps: {t['steps']} at batch {t['batch_size']}, crops of {t['image_size']}x{t['image_size']}",
    ]
    if card.get("pretrained_mix") is not None:
        alpha = card["pretrained_mix"]
        lines.append(f"- Weight-space ensemble at export (WiSE-FT): pretrained weights = {alpha:g} x trained + {1 - alpha:g} x pretrained")
    lines += [
        "",
        "## Config",
        "",
        "```json",
        json.dumps(card["config"], indent=2),
        "```",
    ]
    metrics = card.get("metrics") or {}
    if metrics:
        lines += ["", "## Dev-set metrics", "", "Produced by the command below (protocol in the README).", ""]
        if "command" in metrics:
            lines += [f"    {metrics['command']}", ""]
        rows = metrics.get("rows", {})
        keys = ["n", "psnr", "ssim", "colorfulness", "delta_colorfulness", "top1", "top5", "recovery", "recovery_ci95", "fd_effnet", "hue_agreement"]
        lines += ["| row | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
        for row_name, row in rows.items():
            cells = [format_value(row.get(k)) for k in keys]
            lines.append(f"| {row_name} | " + " | ".join(cells) + " |")
    if card.get("notes"):
        lines += ["", "## Notes", "", card["notes"]]
    return "\n".join(lines) + "\n"


def _short_path(path: str) -> str:
    """``parent/name`` of a data path as given (``train200/`` -> ``train200``)."""
    p = Path(path)
    return f"{p.parent.name}/{p.name}" if p.parent.name else p.name


def format_value(value: Any) -> str:
    """A table cell: ``-`` for None, 4 significant digits, an interval as ``low to high``."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):  # an interval
        return " to ".join(f"{v:.2f}" for v in value)
    return str(value)
