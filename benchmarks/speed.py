"""Speed and memory of `tinct colorize` on this machine (not a test).

    python benchmarks/speed.py [--model default] [--repeats 5] [--sizes 3x50000,50000x3]

For each size (512x512, 4000x3000, and thin strips of 3x50000 and 50000x3) a fresh process loads the model, colorizes a gray
photo built from a bundled example (resized to that size) and reports the median seconds
of the in-memory colorization (``Colorizer.colorize``), the median seconds of the whole
file-to-file job (read JPEG, colorize, write PNG) and the process's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "astronaut.jpg"
SIZES = [(512, 512), (4000, 3000), (3, 50000), (50000, 3)]  # the thin strips bound peak memory (issue 14)


def worker(model: str, width: int, height: int, repeats: int) -> dict:
    import torch
    from PIL import Image

    from tinct.io import read_image, write_image
    from tinct.pipeline import Colorizer

    torch.set_num_threads(os.cpu_count() or 1)
    colorizer = Colorizer(model, device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "input.jpg"
        Image.open(EXAMPLE).convert("L").resize((width, height), Image.BICUBIC).save(src, quality=92)
        loaded = read_image(src)
        colorizer.colorize_loaded(loaded)  # warm-up
        in_memory, end_to_end = [], []
        for i in range(repeats):
            t0 = time.perf_counter()
            colorizer.colorize_loaded(loaded)
            in_memory.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            out = colorizer.colorize_loaded(read_image(src))
            write_image(out, Path(tmp) / f"out{i}.png")
            end_to_end.append(time.perf_counter() - t0)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "size": f"{width}x{height}",
        "median_s": statistics.median(in_memory),
        "median_file_to_file_s": statistics.median(end_to_end),
        "peak_rss_mb": peak_kb / 1024,
        "working_size": colorizer.size,
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--sizes", default=None, metavar="WxH,...", help="only these sizes (default: all of SIZES)")
    parser.add_argument("--worker", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.model, *args.worker, args.repeats)))
        return
    results = []
    sizes = [tuple(int(v) for v in item.lower().split("x")) for item in args.sizes.split(",")] if args.sizes else SIZES
    for w, h in sizes:
        out = subprocess.run(
            [sys.executable, __file__, "--model", args.model, "--repeats", str(args.repeats), "--worker", str(w), str(h)],
            check=True, capture_output=True, text=True,
        )
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"model {args.model}, {os.cpu_count()} CPU cores, median of {args.repeats}")
    print(f"{'size':>10} {'colorize (s)':>13} {'file to file (s)':>17} {'peak RSS (MB)':>14}")
    for r in results:
        print(f"{r['size']:>10} {r['median_s']:>13.3f} {r['median_file_to_file_s']:>17.3f} {r['peak_rss_mb']:>14.0f}")


if __name__ == "__main__":
    main()
