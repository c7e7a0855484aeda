"""Choose a model's working resolution by measuring on the dev set (not a test).

    python benchmarks/working_size.py --model default --data ../shared/data/imagenet-sample-256 \
        --sizes 64 96 128 192 256 [--limit N] [--json]

Scores the same model at each working resolution (short side the network sees) with the
evaluation protocol of `tinct eval`, one row per size, plus the gray and ground-truth rows.
"""

from __future__ import annotations

import argparse
import json
import sys

from tinct.data import cache_dir
from tinct.evaluate import evaluate_models, gray_of, load_ground_truth
from tinct.pipeline import Colorizer
from tinct.report import format_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default")
    parser.add_argument("--data", required=True)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 96, 128, 192, 256])
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    samples, skipped, _ = load_ground_truth(args.data, args.limit)
    colorizer = Colorizer(args.model, device="cpu")

    def at_size(size: int):
        def run(sample):
            colorizer.size = size
            return colorizer.colorize_gray(gray_of(sample.gt))
        return run

    models = {f"size {s}": at_size(s) for s in args.sizes}
    result = evaluate_models(models, samples, skipped, cache_dir=cache_dir(), progress=not args.json).to_dict()
    result["command"] = "python " + " ".join(sys.argv)
    print(json.dumps(result, indent=2) if args.json else format_table(result))


if __name__ == "__main__":
    main()
