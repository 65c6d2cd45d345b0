#!/usr/bin/env python3
"""Startup of two `mohge` binaries (before / after a change), measured back to back in one run.

    bench/startup.py BEFORE_BINARY AFTER_BINARY CHECKPOINT [ROUNDS]

Per round, alternating which binary goes first: the wall time of 10 runs of `mohge config`, and the
best of 3 runs of `OMP_NUM_THREADS=1 mohge generate --checkpoint CHECKPOINT --prompt "The"
--max-tokens 1 --temperature 0`, with the checkpoint's fp32 weights and with `--weights-dtype bf16`
(converted at load; CHECKPOINT: `mohge init configs/dense.toml --out CK` plus a tokenizer.model).
Prints each round, then the best and the median per binary (docs/BENCHMARKS.md "Startup"). These
machines are shared: run it when `uptime` shows a load below 2.
"""
import os
import statistics
import subprocess
import sys
import time

if len(sys.argv) < 4:
    sys.exit("error: usage: bench/startup.py BEFORE_BINARY AFTER_BINARY CHECKPOINT [ROUNDS]")
bins = {"before": sys.argv[1], "after": sys.argv[2]}
ck = sys.argv[3]
rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 9
env = dict(os.environ, OMP_NUM_THREADS="1")
res = {k: {"config x10": [], "generate": [], "generate bf16": []} for k in bins}


def wall(cmd):
    t = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, check=True)
    return time.perf_counter() - t


for r in range(rounds):
    for k in list(bins) if r % 2 == 0 else list(bins)[::-1]:
        b = bins[k]
        res[k]["config x10"].append(sum(wall([b, "config"]) for _ in range(10)))
        gen = [b, "generate", "--checkpoint", ck, "--prompt", "The", "--max-tokens", "1", "--temperature", "0"]
        res[k]["generate"].append(min(wall(gen) for _ in range(3)))
        res[k]["generate bf16"].append(min(wall(gen + ["--weights-dtype", "bf16"]) for _ in range(3)))
    print(f"round {r} (load {os.getloadavg()[0]:.2f}):",
          ", ".join(f"{k} {m} {v[-1] * 1000:.1f} ms" for k in res for m, v in res[k].items()), flush=True)
for k in res:
    for m, v in res[k].items():
        print(f"{k:6s} {m:13s} best {min(v) * 1000:7.1f} ms  median {statistics.median(v) * 1000:7.1f} ms  ({len(v)} rounds)")
