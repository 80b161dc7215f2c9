"""What `zhenwu-cc serve` costs an agent: the eval step, and memory over a long session.

1. In-process (`serve.Server.handle`, no pipes): the median `eval` request on a small kernel
   (examples/gemm.zk at M=N=K=128 unless --shape says otherwise), four ways:
   - edited: the source differs every request (a comment line after the kernel): parsed and
     compiled again, but the program is the same, so its lowering, numerics check and the
     hints' lowerings come from the cache kept by content (`CompiledKernel.shared`);
   - edited, no hints: the same without hints (`"hints": false`);
   - retiled: the schedule's `tile` line differs every request, a program the server has not
     seen: lowered, checked and costed, its hints' edits lowered unless an earlier step tried
     the same schedule (as an agent's step that takes a new schedule does);
   - repeated: the same source again (the compiled kernel, the hints' edits and the numerics
     check cached).
   Goal (issue 16): under 100 ms.
2. One server process, 1,000 requests (cost, check and eval on sources that differ every time,
   so the caches fill up to their bounds and then evict, plus bad requests): its resident memory
   (`stats`) after 100, 250, 500 and 1,000 requests. Goal: no growth once the caches are full.

    python benchmarks/serve.py [--repeats 15] [--requests 1000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = (ROOT / "examples" / "gemm.zk").read_text()
TILE = "tile c [128, 128, 64]"
# 32 tile lines, each the source of one step at most (the warm-up keeps the file's own)
RETILES = [f"tile c [{m}, {n}, {k}]" for k in (16, 32) for m in (16, 32, 64, 128)
           for n in (128, 64, 32, 16)]


def in_process(repeats: int, shape: int) -> dict:
    from zhenwu_cc.serve import Server

    server = Server()
    defines = {"M": shape, "N": shape, "K": shape}

    def timed(make) -> tuple[float, float]:
        """Median wall and CPU milliseconds (CPU time is the steadier on a busy machine)."""
        walls, cpus = [], []
        for i in range(repeats):
            request = json.dumps(make(i))
            t, c = time.perf_counter(), time.process_time()
            response = server.handle(request, i + 1)
            walls.append(time.perf_counter() - t)
            cpus.append(time.process_time() - c)
            assert response["ok"], response["diagnostics"]
        return 1e3 * statistics.median(walls), 1e3 * statistics.median(cpus)

    timed(lambda i: {"command": "eval", "source": SOURCE + "// warm-up\n", "defines": defines})
    return {
        "edited_ms": timed(lambda i: {"command": "eval", "defines": defines,
                                      "source": SOURCE + f"// edit {i}\n"}),
        "edited_no_hints_ms": timed(lambda i: {"command": "eval", "defines": defines,
                                               "hints": False,
                                               "source": SOURCE + f"// other edit {i}\n"}),
        "retiled_ms": timed(lambda i: {"command": "eval", "defines": defines,
                                       "source": SOURCE.replace(
                                           TILE, RETILES[i % len(RETILES)])}),
        "repeated_ms": timed(lambda i: {"command": "eval", "defines": defines,
                                        "source": SOURCE + "// warm-up\n"}),
    }


def session(requests: int) -> list[dict]:
    """RSS of one server process at checkpoints over `requests` mixed requests."""
    checkpoints = {100, 250, 500, requests}
    lines = []
    for i in range(1, requests + 1):
        source = SOURCE + f"// request {i}\n"
        kind = i % 10
        if kind == 0:
            lines.append({"id": i, "command": "eval", "source": source, "check": False,
                          "defines": {"M": 256, "N": 256, "K": 256}})
        elif kind in (1, 2, 3):
            lines.append({"id": i, "command": "check", "source": source})
        elif kind == 4:
            lines.append("not json")
        elif kind == 5:
            lines.append({"id": i, "command": "tune"})
        else:
            lines.append({"id": i, "command": "cost", "source": source,
                          "defines": {"M": 64 * (1 + i % 8), "N": 512, "K": 512}})
        if i in checkpoints:
            lines.append({"id": f"stats@{i}", "command": "stats"})
    text = "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n"
    t = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "zhenwu_cc", "serve"], input=text, cwd=ROOT,
                          capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t
    out = [json.loads(x) for x in done.stdout.splitlines()]
    assert len(out) == len(lines)
    stats = [r for r in out if r["command"] == "stats"]
    return [{"after": int(r["id"].split("@")[1]), "rss_mib": round(r["rss_bytes"] / 2**20, 1),
             "kernels_cached": r["kernels"]["entries"], "costs_cached": r["costs"]["entries"],
             "lowered_cached": r["lowered"]["entries"],
             "wall_s": round(wall, 1)} for r in stats]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--requests", type=int, default=1000)
    p.add_argument("--shape", type=int, default=128, help="M = N = K of the eval kernel")
    args = p.parse_args()
    step = in_process(args.repeats, args.shape)
    print(f"eval step in-process, examples/gemm.zk at M=N=K={args.shape}, median of "
          f"{args.repeats}:")
    for key, what in (("edited_ms", "edited comment (same program), with hints  "),
                      ("edited_no_hints_ms", "edited comment, no hints                   "),
                      ("retiled_ms", "edited tile line (a new program), with hints"),
                      ("repeated_ms", "same source again (kernel+edits+check kept)")):
        wall, cpu = step[key]
        print(f"  {what}: {wall:7.1f} ms wall, {cpu:7.1f} ms CPU")
    rows = session(args.requests)
    print(f"\none server, {args.requests} requests (eval, check, cost on distinct sources; bad "
          f"requests), {rows[-1]['wall_s']} s:")
    print(f"  {'after':>6} {'RSS MiB':>8} {'kernels':>8} {'costs':>6} {'lowered':>8}")
    for r in rows:
        print(f"  {r['after']:>6} {r['rss_mib']:>8} {r['kernels_cached']:>8} "
              f"{r['costs_cached']:>6} {r['lowered_cached']:>8}")


if __name__ == "__main__":
    main()
