"""What API keys and per-tenant rate limits cost per request.

Run: ``python benchmarks/auth_bench.py [--seconds 8] [--redis redis://127.0.0.1:6379/0]``

Serves the ``embed`` example and sends only repeats of 50 sentences, so that after the
warm-up every request is a result-cache hit: no model runs, and what is left is the
per-request path (HTTP, validation, cache lookup, JSON) where a key check or a rate-limit
round trip would show most. The same load runs against four servers in one run: auth off,
auth on, auth plus a rate limit counted in this process, and auth plus a rate limit
counted in Redis (limits set high enough never to refuse: the figure is the cost of
checking). Prints requests/s and p50 with each one's ratio to auth off. No fixed target
(no issue names one); the goal is that turning auth on costs a few percent at most.
"""

from __future__ import annotations

import argparse
import secrets
import tempfile
from pathlib import Path

from _harness import SERVE_EMBED, ensure, measure_server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    ensure("aiohttp", "psutil")
    key = secrets.token_urlsafe(32)
    keys = Path(tempfile.mkdtemp(prefix="tenfold-auth-bench-")) / "keys.txt"
    keys.write_text(f"bench {key}\n")
    auth = ["--api-key-file", str(keys)]
    high = ["--rate-limit-rps", "1000000", "--rate-limit-burst", "1000000"]
    setups = [
        ("auth off", []),
        ("auth on", auth),
        ("auth + limit (memory)", [*auth, *high]),
        ("auth + limit (redis)", [*auth, *high, "--rate-limit-url", args.redis]),
    ]
    load = ("--repeat", "1.0", "--hot", "50", "--header", f"authorization: Bearer {key}")
    runs = {}
    for name, extra in setups:
        print(f"  {name} ...", flush=True)
        runs[name] = measure_server(
            "auth-" + name.split()[0] + str(len(runs)),
            [*SERVE_EMBED, *extra],
            "/readyz",
            "/v1/models/embed/predict",
            args,
            load,
        )
        statuses = runs[name]["statuses"]
        assert set(statuses) == {"200"} or set(statuses) == {200}, (name, statuses)
    base = runs["auth off"]
    print()
    print(
        f"embed, every request a cache hit, concurrency {args.concurrency}, {args.seconds:g} s each"
    )
    print(f"{'setup':24} {'req/s':>8} {'x off':>6} {'p50 ms':>7} {'p99 ms':>7}")
    for name, r in runs.items():
        print(
            f"{name:24} {r['items_per_s']:8.0f} {r['items_per_s'] / base['items_per_s']:6.2f} "
            f"{r['p50_ms']:7.2f} {r['p99_ms']:7.2f}"
        )


if __name__ == "__main__":
    main()
