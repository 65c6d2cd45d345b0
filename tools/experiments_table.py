#!/usr/bin/env python3
"""Tables for docs/EXPERIMENTS.md from the runs of scripts/experiments.sh.

Reads, per run directory RUN (runs/exp/NAME): RUN/log.jsonl (step records), RUN/eval_loss.json and
RUN/eval_cloze.json (mohge eval), RUN/analysis/analysis.json and report.html (mohge analyze), and
the newest checkpoint's model.safetensors header (exact parameter count). Prints Markdown; with
--charts DIR also copies chosen SVG charts out of each report.html into DIR/NAME-CHART.svg.
Plain python3 (no numpy / torch).
"""
import argparse
import glob
import json
import os
import re
import struct


def load_json(path):
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except json.JSONDecodeError:  # still being written
        return None


def log_records(run):
    steps, evals = [], []
    path = os.path.join(run, "log.jsonl")
    if not os.path.exists(path):
        return steps, evals
    for line in open(path):
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            continue
        (evals if "val_loss" in r else steps).append(r)
    return steps, evals


def newest_checkpoint(run):
    cks = sorted(glob.glob(os.path.join(run, "checkpoints", "step_*", "config.json")))
    return os.path.dirname(cks[-1]) if cks else None


def param_counts(ckpt):
    """(total, embedding) parameter counts from the safetensors header."""
    with open(os.path.join(ckpt, "model.safetensors"), "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    total = embed = 0
    for name, t in header.items():
        if name == "__metadata__":
            continue
        k = 1
        for s in t["shape"]:
            k *= s
        total += k
        if name == "model.embed_tokens.weight":
            embed = k
    return total, embed


def mean(xs):
    return sum(xs) / len(xs) if xs else float("nan")


def run_summary(run):
    name = os.path.basename(run.rstrip("/"))
    ckpt = newest_checkpoint(run)
    if not ckpt:
        return None
    cfg = load_json(os.path.join(ckpt, "config.json"))
    total, embed = param_counts(ckpt)
    steps, evals = log_records(run)
    ev = load_json(os.path.join(run, "eval_loss.json")) or {}
    cl = load_json(os.path.join(run, "eval_cloze.json")) or {}
    an = load_json(os.path.join(run, "analysis", "analysis.json"))
    s = {"name": name, "cfg": cfg, "total": total, "embed": embed, "steps": steps[-1]["step"] if steps else 0,
         "tokens": steps[-1]["tokens"] if steps else 0, "val_loss": ev.get("loss"),
         "cloze": (cl.get("metrics") or {}).get("acc"), "cloze_norm": (cl.get("metrics") or {}).get("acc_norm"),
         "train_loss": mean([r["lm_loss"] for r in steps[-20:]]), "an": an}
    if an:
        s["active"] = an["activated_params"]["whole_model"]
        s["active_experts"] = an["activated_params"]["experts_sum"]
    else:  # dense: every parameter but the unused embedding rows
        s["active"] = total - embed + cfg["hidden_size"]
        s["active_experts"] = None
    # activated expert parameters per token over training (from the routing step log)
    routed = [r for r in steps if "routing" in r]
    if routed:
        def experts_active(r):
            return sum(l["activated_expert_params"] for l in r["routing"]["layers"])
        s["active_experts_start"] = mean([experts_active(r) for r in routed[:20]])
        s["active_experts_end"] = mean([experts_active(r) for r in routed[-20:]])
        # share of assignments by expert width class (last 20 steps, mean over MoE layers)
        widths = cfg["expert_widths"]
        order = sorted(range(len(widths)), key=lambda e: widths[e])
        half = len(widths) // 2
        small, large = set(order[:half]), set(order[half:])
        def share(r, group):
            return mean([sum(l["expert_share"][e] for e in group) for l in r["routing"]["layers"]])
        s["small_share_start"] = mean([share(r, small) for r in routed[:20]])
        s["small_share_end"] = mean([share(r, small) for r in routed[-20:]])
        s["large_share_end"] = mean([share(r, large) for r in routed[-20:]])
    return s


def fmt_m(x):
    return "–" if x is None else f"{x / 1e6:.2f} M"


def fmt_f(x, d=3):
    return "–" if x is None else f"{x:.{d}f}"


def table(rows, cols):
    out = ["| " + " | ".join(c[0] for c in cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for r in rows:
        out.append("| " + " | ".join(c[1](r) for c in cols) + " |")
    return "\n".join(out)


# the charts docs/EXPERIMENTS.md embeds: run -> chart ids of its report.html
CHARTS = {"hmoe_topk": ["train-expert-share", "freq-width"], "hmoe_topk_no_pp": ["train-expert-share", "device-load"],
          "hmoe_geometric": ["expert-share-L3"], "mohge": ["expert-share-L3", "wasserstein-mean", "device-load"],
          "mohge_lean": ["device-load"]}


def copy_charts(run, name, out_dir):
    report = os.path.join(run, "analysis", "report.html")
    if not os.path.exists(report):
        return
    html = open(report).read()
    os.makedirs(out_dir, exist_ok=True)
    for cid in CHARTS.get(name, []):
        m = re.search(r'<svg[^>]*id="%s".*?</svg>' % re.escape(cid), html, re.S)
        if m:
            svg = m.group(0)
            if "xmlns=" not in svg[:200]:
                svg = svg.replace("<svg", '<svg xmlns="http://www.w3.org/2000/svg"', 1)
            with open(os.path.join(out_dir, f"{name}-{cid}.svg"), "w") as f:
                f.write(svg + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", help="directory holding one run directory per experiment (runs/exp)")
    ap.add_argument("--charts", help="copy report charts into this directory")
    a = ap.parse_args()
    runs = {}
    for d in sorted(glob.glob(os.path.join(a.runs, "*"))):
        s = run_summary(d) if os.path.isdir(d) else None
        if s:
            runs[s["name"]] = s
            if a.charts:
                copy_charts(d, s["name"], a.charts)
    pick = lambda names: [runs[n] for n in names if n in runs]
    common = [("run", lambda r: r["name"]), ("steps", lambda r: str(r["steps"])),
              ("val loss", lambda r: fmt_f(r["val_loss"])), ("cloze acc", lambda r: fmt_f(r["cloze"])),
              ("cloze acc_norm", lambda r: fmt_f(r["cloze_norm"])), ("total params", lambda r: fmt_m(r["total"])),
              ("activated / token", lambda r: fmt_m(r["active"])),
              ("experts activated / token", lambda r: fmt_m(r["active_experts"]))]
    print("### (a) dense vs moe vs hmoe vs mohge\n")
    print(table(pick(["dense", "moe", "hmoe_topk", "hmoe_topp", "mohge"]), common))
    over = common[:3] + [("expert params / token, first 20 steps", lambda r: fmt_m(r.get("active_experts_start"))),
                         ("last 20 steps", lambda r: fmt_m(r.get("active_experts_end"))),
                         ("share of the 4 small experts, start → end",
                          lambda r: f"{r['small_share_start']:.3f} → {r['small_share_end']:.3f}" if "small_share_end" in r else "–")]
    print("\n### (b) hmoe without vs with P-Penalty\n")
    print(table(pick(["hmoe_topk_no_pp", "hmoe_topk"]), over))
    print("\n### (c) width strategies (hmoe, top-2, P-Penalty)\n")
    print(table(pick(["hmoe_topk", "hmoe_geometric", "hmoe_hybrid"]), common))
    print("\n### (d) mohge vs moe; gate_norm softmax vs renorm\n")
    d_rows = pick(["moe", "mohge", "mohge_lean", "mohge_renorm"])
    base = runs.get("moe")
    cols = common + [("total vs moe", lambda r: f"{(r['total'] / base['total'] - 1) * 100:+.1f}%" if base else "–")]
    print(table(d_rows, cols))
    print("\n### (e) placement: FLOP-weighted max/mean device load (D = 4, trained routers, summed over MoE layers)\n")
    rows = []
    for r in pick(["moe", "hmoe_topk", "hmoe_topp", "hmoe_topk_no_pp", "hmoe_geometric", "mohge", "mohge_lean", "mohge_renorm"]):
        if not r["an"]:
            continue
        pol = {p["policy"]: p for p in r["an"]["device_load"]["policies"]}
        def cell(p):
            x = pol.get(p)
            return fmt_f(x["max_over_mean"]) if x and x.get("ok") else "refused"
        mv = mean([l["max_vio"] for l in r["an"]["layers"]])
        rows.append((r["name"], cell("contiguous"), cell("pairing"), cell("all_size"), fmt_f(mv)))
    print("| run | contiguous | pairing | all_size | MaxVio (mean over layers) |\n|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")

    print("\n### (f) matmul precision: mohge in fp32 vs bf16 (same seed, data and schedule)\n")
    print(table(pick(["mohge", "mohge_bf16"]), common[:5] + [
        ("train loss, last 20 steps", lambda r: fmt_f(r["train_loss"]))]))

if __name__ == "__main__":
    main()
