#!/usr/bin/env python3
"""Load test of a running `mohge serve` (docs/SERVE.md): C concurrent clients, each sending
streaming /v1/completions requests back to back; per concurrency level, as JSON lines:
  prefill tok/s   median over requests of prompt tokens / time to first token (queueing included:
                  the prefill rate at 1 client)
  decode tok/s    generated tokens (after the first of each request) / wall time of the level
  latency p50/p99 of whole requests, and of time to first token, in ms
  activated params per token (the server's usage field)
Standard library only. Usage:
  bench/bench_serve.py --url http://127.0.0.1:8080 [--clients 1,8,32] [--requests 64]
                       [--prompt-words 48] [--max-tokens 64]
Generation ignores end-of-text (ignore_eos) so every request produces exactly --max-tokens tokens.
"""
import argparse, json, statistics, threading, time, urllib.request

WORDS = "the cat sat on a mat and the dog ran to the house near the green river every morning".split()


def one_request(url, prompt, max_tokens, seed):
    body = json.dumps({"prompt": prompt, "max_tokens": max_tokens, "stream": True, "ignore_eos": True,
                       "temperature": 0.8, "seed": seed}).encode()
    req = urllib.request.Request(url + "/v1/completions", body, {"Content-Type": "application/json"})
    t0 = time.perf_counter()
    ttft, usage = None, None
    with urllib.request.urlopen(req, timeout=600) as r:
        for raw in r:
            line = raw.decode().strip()
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            if ttft is None:
                ttft = time.perf_counter() - t0
            chunk = json.loads(line[6:])
            usage = chunk.get("usage", usage)
    return time.perf_counter() - t0, ttft, usage


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default="http://127.0.0.1:8080")
    ap.add_argument("--clients", default="1,8,32")
    ap.add_argument("--requests", type=int, default=64)
    ap.add_argument("--prompt-words", type=int, default=48)
    ap.add_argument("--max-tokens", type=int, default=64)
    a = ap.parse_args()
    prompt = " ".join(WORDS[i % len(WORDS)] for i in range(a.prompt_words))
    one_request(a.url, prompt, 2, 0)  # warm-up
    for c in [int(x) for x in a.clients.split(",")]:
        results, lock, nxt = [], threading.Lock(), [0]

        def client():
            while True:
                with lock:
                    i = nxt[0]
                    nxt[0] += 1
                if i >= a.requests:
                    return
                r = one_request(a.url, prompt, a.max_tokens, i)
                with lock:
                    results.append(r)

        t0 = time.perf_counter()
        th = [threading.Thread(target=client) for _ in range(c)]
        for t in th: t.start()
        for t in th: t.join()
        wall = time.perf_counter() - t0
        lat = [r[0] for r in results]
        ttft = [r[1] for r in results]
        usage = [r[2] for r in results]
        gen = sum(u["completion_tokens"] - 1 for u in usage)
        print(json.dumps({
            "clients": c, "requests": len(results), "prompt_tokens": usage[0]["prompt_tokens"],
            "max_tokens": a.max_tokens,
            "prefill_tok_s": round(statistics.median(u["prompt_tokens"] / t for u, t in zip(usage, ttft)), 1),
            "decode_tok_s": round(gen / wall, 1),
            "latency_ms_p50": round(pct(lat, 50) * 1e3, 1), "latency_ms_p99": round(pct(lat, 99) * 1e3, 1),
            "ttft_ms_p50": round(pct(ttft, 50) * 1e3, 1), "ttft_ms_p99": round(pct(ttft, 99) * 1e3, 1),
            "activated_params_per_token": round(statistics.mean(u["activated_params_per_token"] for u in usage)),
        }), flush=True)


if __name__ == "__main__":
    main()
