"""The naive in-process loop and the batch sweep, in their own process.

python benchmarks/_raw_embed.py --seconds 15 [--sweep 1,2,4,8,16,32,64]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from tenfold.examples.embed import load_sentence_transformer
from tenfold.examples.sentences import sentences


def loop(model, texts: list[str], batch: int, seconds: float) -> dict[str, float]:
    done, batches, i = 0, 0, 0
    lat: list[float] = []
    t_end = time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        chunk = texts[i : i + batch]
        if len(chunk) < batch:
            i, chunk = 0, texts[:batch]
        t0 = time.perf_counter()
        model.encode(chunk, batch_size=batch, show_progress_bar=False)
        lat.append(time.perf_counter() - t0)
        done += len(chunk)
        batches += 1
        i += batch
    lat.sort()
    total = sum(lat)
    return {
        "batch_size": batch,
        "items_per_s": done / total,
        "latency_ms": 1000 * total / batches,
        "latency_p99_ms": 1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))],
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=float, default=15)
    p.add_argument("--sweep", default="")
    p.add_argument("--sweep-seconds", type=float, default=4)
    args = p.parse_args()
    texts = sentences(5000, seed=7)
    random.Random(7).shuffle(texts)
    model = load_sentence_transformer()
    model.encode(texts[:32])
    out: dict[str, object] = {"raw": loop(model, texts, 32, args.seconds)}
    if args.sweep:
        out["sweep"] = [
            loop(model, texts, int(b), args.sweep_seconds) for b in args.sweep.split(",")
        ]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
