"""The human loop's speed on real images: init (decode + cache), one query, the label round trip.

Data: Fashion-MNIST training images (Debian's ``dataset-fashion-mnist``) written as PNG files
into a flat folder (writing them is not timed). Measured:

- ``dalcore init`` of the folder: walk, hash, decode in parallel, write the pixel cache
  (a fresh project each repeat; median of ``--repeats``);
- one ``dalcore query --semi`` (cpu preset) on that project with ``--labels`` random true labels,
  with the default 3-fold cross-validation and without it (``--cv 0``);
- the page's label round trip: a real ``dalcore serve`` process, ``POST /api/label`` from one
  HTTP keep-alive client, ``--labels-posted`` times (median and 95th percentile).

Usage::

    python benches/bench_project.py                       # 10,000 images
    python benches/bench_project.py --images 2000 --quick # a smaller, faster run
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

FASHION = Path("/usr/share/datasets/fashion-mnist")
CLASSES = ["tshirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
           "boot"]


def write_folder(folder: Path, n: int, seed: int) -> dict[str, int]:
    from PIL import Image

    from dalcore.data.idx import read_idx

    x = read_idx(FASHION / "train-images-idx3-ubyte.gz", 3)
    y = read_idx(FASHION / "train-labels-idx1-ubyte.gz", 1)
    idx = np.random.default_rng(seed).permutation(len(y))[:n]
    folder.mkdir(parents=True)
    truth = {}
    for k, i in enumerate(idx):
        rel = f"f{k:05d}.png"
        Image.fromarray(np.asarray(x[i], np.uint8)).save(folder / rel)
        truth[rel] = int(y[i])
    return truth


def time_init(folder: Path, work: Path, repeats: int) -> list[float]:
    from dalcore.project.init import init_project

    times = []
    for r in range(repeats):
        t0 = time.perf_counter()
        project, report, _ = init_project(work / f"p{r}", images=folder,
                                          classes=",".join(CLASSES), progress=False)
        times.append(time.perf_counter() - t0)
        assert report.new_images == report.files
        project.close()
    return times


def time_query(proj: Path, truth: dict[str, int], n_labels: int, cv: int, seed: int
               ) -> tuple[float, float]:
    from dalcore.project import Project
    from dalcore.project.query import QueryOptions, run_query

    with Project.open(proj) as p:
        if not p.current_labels():
            rng = np.random.default_rng(seed)
            chosen = rng.choice(sorted(truth), size=n_labels, replace=False)
            p.set_labels(((p.image_id_of(str(k)), truth[str(k)]) for k in chosen),
                         source="import")
    t0, c0 = time.perf_counter(), time.process_time()
    res = run_query(proj, QueryOptions(budget=100, method="uncertainty", semi=True, cv=cv,
                                       progress=False))
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    print("   " + "\n   ".join(res.lines[:-1]))
    return seconds, cpu


def label_round_trips(proj: Path, count: int) -> list[float]:
    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "dalcore", "serve", str(proj), "--port",
                               str(port)], stdout=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=url, timeout=10) as c:
            for _ in range(300):
                try:
                    items = c.get("/api/state").json()["query"]["items"]
                    break
                except httpx.HTTPError:
                    time.sleep(0.2)
            times = []
            for k in range(count):
                it = items[k % len(items)]
                t0 = time.perf_counter()
                r = c.post("/api/label", json={"image_id": it["image_id"], "class_id": k % 10})
                times.append(time.perf_counter() - t0)
                assert r.status_code == 200
        return times
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=10_000)
    ap.add_argument("--labels", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--labels-posted", type=int, default=200)
    ap.add_argument("--quick", action="store_true", help="one init, no cross-validated query")
    ap.add_argument("--out", default=None, help="write the figures as JSON here")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if not (FASHION / "train-images-idx3-ubyte.gz").exists():
        sys.exit(f"needs Debian's dataset-fashion-mnist ({FASHION})")
    res: dict = {"data": f"Fashion-MNIST training images, {args.images} PNG files (28x28)",
                 "cpus": os.cpu_count(), "load_before": os.getloadavg()}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        truth = write_folder(work / "images", args.images, args.seed)
        init = time_init(work / "images", work, 1 if args.quick else args.repeats)
        res["init_s"] = init
        print(f"init ({args.images} images): median {np.median(init):.1f} s {init}")
        proj = work / "p0"
        for cv in ((0,) if args.quick else (3, 0)):
            s, cpu = time_query(proj, truth, args.labels, cv, args.seed)
            res[f"query_semi_cv{cv}_s"] = s
            res[f"query_semi_cv{cv}_cpu_s"] = cpu
            print(f"query --semi --cv {cv} ({args.labels} labels): {s:.1f} s wall, {cpu:.1f} s "
                  "CPU (one torch thread: the wall time of a quiet machine)")
        rt = np.array(label_round_trips(proj, args.labels_posted)) * 1e3
        res["label_ms"] = {"median": float(np.median(rt)), "p95": float(np.percentile(rt, 95)),
                           "n": int(rt.size)}
        print(f"label round trip: median {np.median(rt):.1f} ms, p95 "
              f"{np.percentile(rt, 95):.1f} ms over {rt.size}")
    res["load_after"] = os.getloadavg()
    print(f"load average before {res['load_before']}, after {res['load_after']}")
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
