#!/usr/bin/python3
"""Write a small random mohge checkpoint + tokens file for testing the reference and the engine.

  /usr/bin/python3 tools/make_test_checkpoint.py --out DIR --kind dense|moe|hmoe|mohge
      [--seed S] [--tie] [--router top_k|top_p] [--gate-norm softmax|renorm] [--all-coefs]
      [--std 0.05] [--min-margin 2e-4]

DIR gets config.json, model.safetensors (F32) and tokens.safetensors (`tokens` I32 [B, T+1]).
Shapes: V=64, d=32, 2 layers, 4 heads, 2 kv heads, dense width 64, B=2, T=12.
  moe   : 4 experts of width 16, top-2;            coefs load_balance, p_penalty, router_entropy
  hmoe  : widths 8,16,24,32, top-p 0.6, max 3;      same coefs
  mohge : 3 groups x 2 experts, widths 8,16,24, Kg=2, K=3, shared width 16, first layer dense,
          gate_norm softmax, delta 16;            coefs group, intra_group (--all-coefs: all five)
Weights ~ N(0, std), embedding ~ N(0, 0.3), router weights ~ N(0, 0.3) so routing is decisive,
norms 1 + N(0, 0.1).
The seed is advanced until every token is at least --min-margin away from a routing decision
boundary in the float64 reference (so an fp32 engine routes identically); the seed used is
stored in config.json's "test_seed".
"""
import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_io import write_safetensors  # noqa: E402

V, D, L, H, KVH, I, B, T = 64, 32, 2, 4, 2, 64, 2, 12


def make_config(kind, tie=False, router=None, gate_norm="softmax", all_coefs=False):
    c = {"model_type": "mohge", "vocab_size": V, "hidden_size": D, "num_hidden_layers": L,
         "num_attention_heads": H, "num_key_value_heads": KVH, "intermediate_size": I,
         "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "tie_word_embeddings": bool(tie),
         "max_position_embeddings": 64, "ffn_kind": kind, "expert_widths": [],
         "num_expert_groups": 1, "experts_per_group": 0, "router": "top_k",
         "num_experts_per_tok": 2, "top_p": 0.6, "max_experts_per_tok": 0, "topk_group": 1,
         "gate_norm": gate_norm, "shared_expert_width": 0, "first_dense_layers": 0,
         "aux_loss_coefs": {"load_balance": 0.0, "p_penalty": 0.0, "router_entropy": 0.0,
                            "group": 0.0, "intra_group": 0.0},
         "group_loss_delta": 1024.0, "group_loss_start_step": 0}
    flat = {"load_balance": 0.01, "p_penalty": 0.02, "router_entropy": 0.03}
    if kind == "moe":
        c.update(expert_widths=[16] * 4, experts_per_group=4, router=router or "top_k",
                 num_experts_per_tok=2, max_experts_per_tok=4)
        c["aux_loss_coefs"].update(flat)
    elif kind == "hmoe":
        c.update(expert_widths=[8, 16, 24, 32], experts_per_group=4, router=router or "top_p",
                 num_experts_per_tok=2, top_p=0.6, max_experts_per_tok=3)
        c["aux_loss_coefs"].update(flat)
    elif kind == "mohge":
        c.update(expert_widths=[8, 8, 16, 16, 24, 24], num_expert_groups=3, experts_per_group=2,
                 router="two_level", num_experts_per_tok=3, max_experts_per_tok=3, topk_group=2,
                 shared_expert_width=16, first_dense_layers=1, group_loss_delta=16.0)
        c["aux_loss_coefs"].update(group=0.04, intra_group=0.05)
        if all_coefs:
            c["aux_loss_coefs"].update(flat)
    elif kind != "dense":
        raise ValueError(kind)
    return c


def make_weights(cfg, rng, std):
    d, hd = cfg["hidden_size"], cfg["hidden_size"] // cfg["num_attention_heads"]
    nrm = lambda n: (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32)  # noqa: E731
    lin = lambda o, i, s=std: (s * rng.standard_normal((o, i))).astype(np.float32)  # noqa: E731
    w = {"model.embed_tokens.weight": lin(cfg["vocab_size"], d, 0.3),
         "model.norm.weight": nrm(d)}
    if not cfg["tie_word_embeddings"]:
        w["lm_head.weight"] = lin(cfg["vocab_size"], d)
    swiglu = lambda pre, width: w.update({pre + "gate_proj.weight": lin(width, d),  # noqa: E731
                                          pre + "up_proj.weight": lin(width, d),
                                          pre + "down_proj.weight": lin(d, width)})
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        w[p + "input_layernorm.weight"] = nrm(d)
        w[p + "post_attention_layernorm.weight"] = nrm(d)
        H, KVH = cfg["num_attention_heads"], cfg["num_key_value_heads"]
        w[p + "self_attn.q_proj.weight"] = lin(H * hd, d)
        w[p + "self_attn.k_proj.weight"] = lin(KVH * hd, d)
        w[p + "self_attn.v_proj.weight"] = lin(KVH * hd, d)
        w[p + "self_attn.o_proj.weight"] = lin(d, H * hd)
        if cfg["ffn_kind"] == "dense" or l < cfg["first_dense_layers"]:
            swiglu(p + "mlp.", cfg["intermediate_size"])
            continue
        w[p + "mlp.gate.weight"] = lin(len(cfg["expert_widths"]), d, 0.3)
        if cfg["router"] == "two_level":
            w[p + "mlp.group_gate.weight"] = lin(cfg["num_expert_groups"], d, 0.3)
        for e, width in enumerate(cfg["expert_widths"]):
            swiglu(f"{p}mlp.experts.{e}.", width)
        if cfg["shared_expert_width"] > 0:
            swiglu(p + "mlp.shared_experts.", cfg["shared_expert_width"])
    return w


def write_checkpoint(out, cfg, weights, tokens):
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    write_safetensors(os.path.join(out, "model.safetensors"), weights)
    write_safetensors(os.path.join(out, "tokens.safetensors"), {"tokens": tokens})


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--kind", required=True, choices=["dense", "moe", "hmoe", "mohge"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tie", action="store_true", help="tie lm_head to the embedding")
    ap.add_argument("--router", choices=["top_k", "top_p"], help="override for moe/hmoe")
    ap.add_argument("--gate-norm", choices=["softmax", "renorm"], default="softmax")
    ap.add_argument("--all-coefs", action="store_true",
                    help="mohge: also non-zero load_balance/p_penalty/router_entropy")
    ap.add_argument("--std", type=float, default=0.05)
    ap.add_argument("--min-margin", type=float, default=2e-4)
    a = ap.parse_args()
    cfg = make_config(a.kind, a.tie, a.router, a.gate_norm, a.all_coefs)
    import torch_ref  # imports torch; only needed for the margin check
    for seed in range(a.seed, a.seed + 1000):
        rng = np.random.default_rng(seed)
        weights = make_weights(cfg, rng, a.std)
        tokens = rng.integers(0, V, size=(B, T + 1)).astype(np.int32)
        cfg["test_seed"] = seed
        write_checkpoint(a.out, cfg, weights, tokens)
        _, s = torch_ref.run_reference(a.out, os.path.join(a.out, "tokens.safetensors"))
        if s["min_routing_margin"] >= a.min_margin:
            break
    else:
        sys.exit("no seed gave a routing margin >= --min-margin")
    print(f"wrote {a.out} (kind {a.kind}, seed {seed}, {len(weights)} tensors, "
          f"{sum(x.size for x in weights.values())} params, loss {s['loss']:.6f}, "
          f"min routing margin {s['min_routing_margin']:.3g})")


if __name__ == "__main__":
    main()
