"""Vividness of CIC against the annealed-mean temperature (not a test).

    python benchmarks/cic_temperature.py --model cic --data ../shared/data/imagenet-sample-256 \
        [--temperatures 1 0.77 0.58 0.38 0.29 0.14 0] [--limit N] [--json]

Colorizes the gray version of every color ground-truth image (the evaluation protocol's input)
at each temperature and prints the mean Hasler-Suesstrunk colorfulness per temperature
(0 = the mode), with the ground truth's for reference. The paper's claim: colorfulness rises
as T falls from 1 to 0.38.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from tinct.data import colorfulness
from tinct.evaluate import gray_of, load_ground_truth
from tinct.pipeline import Colorizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="cic")
    parser.add_argument("--data", required=True)
    parser.add_argument("--temperatures", type=float, nargs="+", default=[1.0, 0.77, 0.58, 0.38, 0.29, 0.14, 0.0])
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--size", type=int, default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    samples, skipped, _ = load_ground_truth(args.data, args.limit)
    colorizer = Colorizer(args.model, device="cpu", size=args.size)
    cf = {t: [] for t in args.temperatures}
    for s in samples:
        gray = gray_of(s.gt)
        for t in args.temperatures:
            cf[t].append(colorfulness(colorizer.colorize_gray(gray, temperature=t)))
    result = {
        "command": "python " + " ".join(sys.argv), "model": args.model, "n": len(samples), "skipped": skipped,
        "ground_truth": float(np.mean([colorfulness(s.gt) for s in samples])),
        "colorfulness": {("mode" if t == 0 else f"{t:g}"): float(np.mean(v)) for t, v in cf.items()},
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print("| T | mean colorfulness |\n|---|---|")
    for t, v in result["colorfulness"].items():
        print(f"| {t} | {v:.2f} |")
    print(f"| ground truth | {result['ground_truth']:.2f} |")
    print(f"n = {result['n']} (gray skipped: {skipped})")


if __name__ == "__main__":
    main()
