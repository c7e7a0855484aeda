"""Diversity of BigColor against the spread of the random code z (not a test).

    python benchmarks/bigcolor_diversity.py --model bigcolor --data ../shared/data/imagenet-sample-256 \
        [--sigmas 0.8 3 10] [--samples 4] [--limit 100] [--grid diversity.png] [--json]

For each image (the gray version of a dev-set photo) and each sigma, draws ``samples`` codes
z ~ N(0, sigma^2 I) and reports the mean pairwise per-pixel ab distance between the outputs
(CIE Lab, at the image's size), averaged over images. The IPOL analysis observed more diverse
colorizations as sigma grows. ``--grid`` writes rows of: gray | the samples of each sigma.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys

import numpy as np
import torch
from PIL import Image

from tinct.color import rgb_to_lab
from tinct.evaluate import gray_of, load_ground_truth, thumbnail
from tinct.figures import labelled_strip
from tinct.pipeline import Colorizer


def ab_of(rgb8: np.ndarray) -> torch.Tensor:
    return rgb_to_lab(torch.from_numpy(rgb8.astype(np.float32) / 255).permute(2, 0, 1))[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="bigcolor")
    parser.add_argument("--data", required=True)
    parser.add_argument("--sigmas", type=float, nargs="+", default=[0.8, 3.0, 10.0])
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--grid", default=None, help="PNG of the first --grid-rows images")
    parser.add_argument("--grid-rows", type=int, default=6)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    samples, skipped, _ = load_ground_truth(args.data, args.limit)
    colorizer = Colorizer(args.model, device="cpu")
    distances = {s: [] for s in args.sigmas}
    rows = []
    for i, sample in enumerate(samples):
        gray = gray_of(sample.gt)
        row = [thumbnail(np.repeat((gray * 255 + 0.5).astype(np.uint8)[..., None], 3, axis=2))]
        for sigma in args.sigmas:
            outs = [colorizer.colorize_gray(gray, sigma=sigma, seed=k) for k in range(args.samples)]
            abs_ = [ab_of(o) for o in outs]
            pair = [float(torch.linalg.vector_norm(a - b, dim=0).mean()) for a, b in itertools.combinations(abs_, 2)]
            distances[sigma].append(float(np.mean(pair)))
            row += [thumbnail(o) for o in outs]
        if i < args.grid_rows:
            rows.append(row)
    result = {
        "command": "python " + " ".join(sys.argv), "model": args.model, "n": len(samples), "samples_per_image": args.samples,
        "mean_pairwise_ab_distance": {f"{s:g}": float(np.mean(v)) for s, v in distances.items()},
    }
    if args.grid and rows:
        labels = ["gray"] + [f"sigma {s:g} #{k + 1}" for s in args.sigmas for k in range(args.samples)]
        strips = [labelled_strip(r, labels) for r in rows]
        sheet = Image.new("RGB", (strips[0].width, sum(s.height for s in strips)), "white")
        y = 0
        for s in strips:
            sheet.paste(s, (0, y))
            y += s.height
        sheet.save(args.grid)
        result["grid"] = args.grid
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print("| sigma | mean pairwise ab distance |\n|---|---|")
    for s, v in result["mean_pairwise_ab_distance"].items():
        print(f"| {s} | {v:.2f} |")
    print(f"n = {result['n']} images, {args.samples} samples each")


if __name__ == "__main__":
    main()
