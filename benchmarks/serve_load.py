"""Load test of ``tinct serve``: N concurrent colorize requests of 512 x 512 photos.

Starts ``tinct serve`` on 127.0.0.1 (loopback only) in a child process, sends ``--requests``
requests at once through Gradio's client API (``/colorize``: upload, queue, colorize, result),
waits for all of them (bounded by ``--timeout``), stops the server and prints the number that
succeeded and the latency percentiles (from submitting a request to its result, so queueing
time included). Not a unit test; run it by hand:

    OMP_NUM_THREADS=1 python benchmarks/serve_load.py [--requests 100] [--workers 1] [--model default]

Needs ``pip install 'tinct[serve]'``.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
HOST = "127.0.0.1"  # loopback only


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def make_photos(folder: Path, n: int, size: int) -> list[Path]:
    """n different gray size x size photos from the bundled examples (crops, flips)."""
    sources = [Image.open(p).convert("L") for p in sorted(EXAMPLES.glob("*.jpg"))]
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        im = sources[i % len(sources)]
        scale = size / min(im.size) * (1 + 0.5 * rng.random())
        im = im.resize((max(size, round(im.width * scale)), max(size, round(im.height * scale))), Image.BICUBIC)
        x, y = rng.integers(0, im.width - size + 1), rng.integers(0, im.height - size + 1)
        im = im.crop((x, y, x + size, y + size))
        if i % 2:
            im = ImageOps.mirror(im)
        path = folder / f"photo{i:03d}.jpg"
        im.save(path, quality=90)
        paths.append(path)
    return paths


def wait_ready(url: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"the server did not answer within {timeout:.0f} s")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=100, help="concurrent requests (default: %(default)s)")
    ap.add_argument("--size", type=int, default=512, help="photo side in pixels (default: %(default)s)")
    ap.add_argument("--model", default="default")
    ap.add_argument("--workers", type=int, default=1, help="the server's --workers (default: %(default)s)")
    ap.add_argument("--timeout", type=float, default=600, help="give up after this many seconds (default: %(default)s)")
    args = ap.parse_args()
    if not 1 <= args.requests <= 1000:
        ap.error("--requests must be 1..1000")
    from gradio_client import Client, handle_file

    port = free_port()
    url = f"http://{HOST}:{port}/"
    with tempfile.TemporaryDirectory(prefix="tinct-load-") as tmp:
        photos = make_photos(Path(tmp), args.requests, args.size)
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        server = subprocess.Popen(
            [sys.executable, "-m", "tinct", "serve", "--host", HOST, "--port", str(port), "--models", args.model,
             "--workers", str(args.workers), "--queue-size", str(max(200, args.requests)), "--device", "cpu"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        try:
            t0 = time.time()
            wait_ready(url, server, timeout=120)
            print(f"server ready in {time.time() - t0:.1f} s on {url} (model {args.model}, workers {args.workers})",
                  file=sys.stderr)
            client = Client(url, verbose=False, download_files=False)

            def one(path: Path) -> tuple[float, bool, str]:
                start = time.perf_counter()
                try:
                    out = client.predict(image=handle_file(str(path)), name=args.model, options_json="{}",
                                         api_name="/colorize")
                    ok = isinstance(out, list) and len(out) == 1
                    return time.perf_counter() - start, ok, "" if ok else f"unexpected result {out!r}"
                except Exception as exc:  # noqa: BLE001 - counted as a failure
                    return time.perf_counter() - start, False, f"{exc.__class__.__name__}: {exc}"

            t0 = time.time()
            with ThreadPoolExecutor(max_workers=args.requests) as pool:
                futures = [pool.submit(one, p) for p in photos]
                done, pending = wait(futures, timeout=args.timeout)
                for f in pending:
                    f.cancel()
            wall = time.time() - t0
            results = [f.result() for f in done]
            latencies = np.array([r[0] for r in results if r[1]])
            failures = [r[2] for r in results if not r[1]] + ["timed out"] * len(pending)
            print(f"{args.requests} concurrent requests of {args.size}x{args.size} photos, model {args.model}, "
                  f"server --workers {args.workers}, {os.cpu_count()} CPU cores, OMP_NUM_THREADS={env['OMP_NUM_THREADS']}")
            print(f"succeeded {len(latencies)} / {args.requests}, failed {len(failures)}; wall {wall:.1f} s, "
                  f"{len(latencies) / wall:.2f} requests/s")
            if len(latencies):
                p50, p95 = np.percentile(latencies, [50, 95])
                print(f"latency (submit -> result, queueing included): p50 {p50:.2f} s, p95 {p95:.2f} s, "
                      f"max {latencies.max():.2f} s, min {latencies.min():.2f} s")
            for message in sorted(set(failures))[:5]:
                print(f"failure: {message}")
            return 0 if not failures else 1
        finally:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


if __name__ == "__main__":
    sys.exit(main())
