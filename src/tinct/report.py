"""Reports of an evaluation (:func:`tinct.evaluate.evaluate_models`, as its ``to_dict()``):
the Markdown table, the JSON, the per-image CSV, a contact sheet and a colorfulness/FD-EffNet
plot, written by :func:`write_report` into one folder."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from .io import atomic_path, write_text_atomic
from .weights import format_value

__all__ = ["format_table", "json_ready", "contact_sheet", "metrics_plot", "per_image_csv", "write_report", "THUMB_SIZE"]

#: side of the contact sheet's thumbnails, px
THUMB_SIZE = 160


def format_table(result: dict[str, Any]) -> str:
    keys = ["n", "psnr", "ssim", "colorfulness", "delta_colorfulness", "top1", "top5", "recovery", "recovery_ci95", "fd_effnet", "auc_raw",
            "auc_rebalanced", "hue_agreement"]
    if any("fid" in row for row in result["rows"].values()):
        keys.append("fid")
    lines = ["| row | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for name, row in result["rows"].items():
        cells = [format_value(row.get(k)) for k in keys]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def json_ready(result: dict[str, Any]) -> dict[str, Any]:
    """The result without the in-memory thumbnails and the per-image table."""
    return {k: v for k, v in result.items() if k not in ("thumbnails", "per_image")}


def contact_sheet(result: dict[str, Any]) -> Image.Image:
    """One row per sheet image; columns gray | each model | ground truth, labelled on top."""
    thumbs = result["thumbnails"]
    columns = list(thumbs)  # gray, models..., gt
    indices = sorted(thumbs["gt"])
    pad, label_h, size = 4, 18, THUMB_SIZE
    sheet = Image.new("RGB", (pad + len(columns) * (size + pad), label_h + len(indices) * (size + pad) + pad), "white")
    draw = ImageDraw.Draw(sheet)
    for c, name in enumerate(columns):
        x = pad + c * (size + pad)
        draw.text((x + 2, 3), name[:28], fill="black")
        for r, i in enumerate(indices):
            sheet.paste(Image.fromarray(thumbs[name][i]), (x, label_h + r * (size + pad)))
    return sheet


def metrics_plot(result: dict[str, Any], path: Path) -> None:
    """Scatter of mean colorfulness against FD-EffNet per row (gray and ground truth included)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=120)
    for name, row in result["rows"].items():
        marker = {"gray": "s", "gt": "*"}.get(name, "o")
        ax.scatter(row["fd_effnet"], row["colorfulness"], marker=marker, s=90 if name == "gt" else 50)
        ax.annotate(name, (row["fd_effnet"], row["colorfulness"]), textcoords="offset points", xytext=(6, 4), fontsize=8)
    ax.set_xlabel("FD-EffNet (lower is better)")
    ax.set_ylabel("mean colorfulness (Hasler-Suesstrunk)")
    ax.set_title(f"n = {result['n']} images")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp)
    plt.close(fig)


def per_image_csv(per_image: dict[str, Any]) -> str:
    """One line per (image, row): which images a model gets right or wrong, and how vivid it is."""
    keys = ["psnr", "ssim", "colorfulness", "top1_correct", "p_true_class", "hue_agreement"]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["image", "label", "row", *keys])
    for i, (name, label) in enumerate(zip(per_image["images"], per_image["labels"])):
        for row, values in per_image["rows"].items():
            writer.writerow([name, label, row, *(_csv_cell(values[k][i]) for k in keys)])
    return buf.getvalue()


def _csv_cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    if isinstance(value, bool):
        return str(int(value))
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def write_report(result: dict[str, Any], out_dir: str | Path) -> Path:
    """Write ``report.md``, ``metrics.json``, ``per_image.csv``, ``contact_sheet.png`` and
    ``plot.png`` to out_dir."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "metrics.json", json.dumps(json_ready(result), indent=2) + "\n")
    if "per_image" in result:
        write_text_atomic(out / "per_image.csv", per_image_csv(result["per_image"]))
    metrics_plot(result, out / "plot.png")
    lines = ["# tinct eval report", ""]
    if result.get("command"):
        lines += [f"Command: `{result['command']}`", ""]
    lines += [f"{result['n']} color images scored, {result['skipped']} gray ground-truth images skipped.", "",
              format_table(result), "", "![colorfulness against FD-EffNet](plot.png)", ""]
    if "thumbnails" in result:
        with atomic_path(out / "contact_sheet.png", suffix=".png") as tmp:
            contact_sheet(result).save(tmp)
        lines += ["Contact sheet (columns: " + " | ".join(result["thumbnails"]) + "; images: " + ", ".join(result["sheet_names"]) + "):", "",
                  "![contact sheet](contact_sheet.png)", ""]
    write_text_atomic(out / "report.md", "\n".join(lines))
    return out
