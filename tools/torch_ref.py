#!/usr/bin/python3
"""PyTorch reference for mohge: one forward + backward of a checkpoint written by the C++ engine.

  /usr/bin/python3 tools/torch_ref.py --checkpoint DIR --tokens-file F --out OUT.safetensors \
      [--dtype float64|float32] [--step S] [--extras]

DIR holds config.json + model.safetensors; F holds an I32/I64 tensor `tokens` [B, T+1]
(inputs = tokens[:, :-1], targets = tokens[:, 1:]). OUT gets `logits` [B,T,V], `loss` [1] (LM loss
+ all aux losses), `lm_loss` [1] and `grad.<name>` for every checkpoint tensor, in --dtype.
--extras adds `aux.layers.{l}.<loss>` [1] (coefficient 1), `routing.layers.{l}.gates` [B*T,E] and
`routing.layers.{l}.tokens_per_expert` [E] for debugging (not produced by the engine by default).

Model and conventions (SPEC.md §1-§4; the code is plain functional torch over a dict of named
parameters whose names are exactly the checkpoint's):
- Linear weights are [out, in]: y = x @ W.T. RMSNorm: x * rsqrt(mean(x^2) + eps) * w.
- RoPE: Hugging Face LLaMA "rotate-half": inv_freq_j = theta^(-2j/hd), j < hd/2; dims j and
  j + hd/2 form a rotated pair; positions 0..T-1 in every sequence. Angles computed in float64,
  then cast to the compute dtype.
- GQA: query head h uses kv head h // (H / KVH) (HF repeat_kv / repeat_interleave).
- Routing is computed in the compute dtype (float64 by default; the engine's fp32 routers can
  differ only at near-ties, which `min routing margin` in the printed summary reports).
- Discrete choices (top-k, top-p order, top-Kg groups, global top-K) use a *stable* descending
  sort, so ties go to the lower index. Counts carry no gradient; gates do.
- Aux-loss statistics are over all B*T tokens of the batch, per MoE layer, summed over layers.
- For router = two_level, load_balance / p_penalty / router_entropy (not defined by SPEC for
  MoHGE) use the combined distribution c_{t,e} (§3 step 3; sums to 1 over E, zero outside S_G)
  as "the router's full probability"; MoHGE checkpoints normally set those coefficients to 0.
"""
import argparse
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_io import read_safetensors, write_safetensors  # noqa: E402

LOSS_NAMES = ("load_balance", "p_penalty", "router_entropy", "group", "intra_group")


# ----------------------------------------------------------------------------- config
def load_config(path):
    """config.json -> dict with every key present (missing MoE keys = dense defaults)."""
    with open(path) as f:
        c = json.load(f)
    c.setdefault("num_key_value_heads", c["num_attention_heads"])
    c.setdefault("rms_norm_eps", 1e-6)
    c.setdefault("rope_theta", 10000.0)
    c.setdefault("tie_word_embeddings", False)
    c.setdefault("ffn_kind", "dense")
    c.setdefault("expert_widths", [])
    c.setdefault("router", "two_level" if c["ffn_kind"] == "mohge" else "top_k")
    c.setdefault("num_expert_groups", 1)
    c.setdefault("experts_per_group", len(c["expert_widths"]))
    c.setdefault("num_experts_per_tok", 2)
    c.setdefault("top_p", 0.6)
    c.setdefault("max_experts_per_tok", len(c["expert_widths"]))
    c.setdefault("topk_group", c["num_expert_groups"])
    c.setdefault("gate_norm", "softmax")
    c.setdefault("shared_expert_width", 0)
    c.setdefault("first_dense_layers", 0)
    coefs = {k: 0.0 for k in LOSS_NAMES}
    coefs.update(c.get("aux_loss_coefs") or {})
    c["aux_loss_coefs"] = coefs
    c.setdefault("group_loss_delta", 1024.0)
    c.setdefault("group_loss_start_step", 0)
    return c


def is_moe_layer(cfg, layer):
    return cfg["ffn_kind"] != "dense" and layer >= cfg["first_dense_layers"]


# ----------------------------------------------------------------------------- routers (SPEC §3)
def _stable_desc_order(v):
    """Indices sorting v descending along the last dim; equal values keep ascending index order."""
    return torch.sort(-v.detach(), dim=-1, stable=True).indices


def _first_n_mask(order, n):
    """Bool mask [T, E] of the first n[t] (int or [T] tensor) entries of each row of `order`."""
    T, E = order.shape
    n = torch.as_tensor(n).reshape(-1, 1)
    keep_sorted = (torch.arange(E).reshape(1, E) < n).expand(T, E)
    return torch.zeros(T, E, dtype=torch.bool).scatter(1, order, keep_sorted)


def _gap_at(sorted_vals, k):
    """min over tokens of sorted[k-1] - sorted[k] (distance to a selection flip), inf if k >= E."""
    if k >= sorted_vals.shape[-1]:
        return math.inf
    return float((sorted_vals[:, k - 1] - sorted_vals[:, k]).min())


def route(x, gate_weight, router, num_experts_per_tok=2, top_p=0.6, max_experts_per_tok=None,
          group_gate_weight=None, num_expert_groups=1, experts_per_group=None, topk_group=1,
          gate_norm="softmax"):
    """Route tokens x [T, d] with router weight [E, d] (and group weight [Ng, d] for two_level).

    Returns a dict of tensors:
      probs  [T, E]  distribution used by load_balance / p_penalty / entropy (softmax for top_k,
                     top_p; combined c for two_level)
      mask   [T, E]  bool, selected experts;  gates [T, E] final gate weights, 0 where unselected
      group_logits [T, Ng], group_mask [T, Ng]  (two_level only)
      margin float: smallest distance of any token to a decision boundary (ties, p threshold)
    """
    logits = x @ gate_weight.t()                                       # [T, E]
    T, E = logits.shape
    out = {"group_logits": None, "group_mask": None}
    if router in ("top_k", "top_p"):
        P = torch.softmax(logits, dim=-1)
        order = _stable_desc_order(P)
        Ps = torch.gather(P, 1, order).detach()
        if router == "top_k":
            K = num_experts_per_tok
            mask = _first_n_mask(order, K)
            margin = _gap_at(Ps, K)
        else:
            max_k = max_experts_per_tok or E
            cs = torch.cumsum(Ps, dim=-1)
            # smallest prefix with cumsum >= p: k = 1 + #{j : cs_j < p}, clamped to [1, max_k]
            k = (1 + (cs < top_p).sum(-1)).clamp(1, min(max_k, E))
            mask = _first_n_mask(order, k)
            margin = float((cs[:, :-1] - top_p).abs().min()) if E > 1 else math.inf
            margin = min([margin] + [_gap_at(Ps, j) for j in range(1, min(max_k, E) + 1)])
        Pm = P * mask
        gates = Pm / Pm.sum(-1, keepdim=True)
        probs = P
    elif router == "two_level":
        Ng, N = num_expert_groups, experts_per_group or E // num_expert_groups
        Kg, K = topk_group, num_experts_per_tok
        assert Ng * N == E and K <= Kg * N, "two_level: need E = Ng*N and K <= Kg*N"
        glogits = x @ group_gate_weight.t()                            # [T, Ng]
        sig = torch.sigmoid(glogits)
        gorder = _stable_desc_order(sig)
        gmask = _first_n_mask(gorder, Kg)                              # S_G
        sig_sel = sig * gmask
        gscale = sig_sel / sig_sel.sum(-1, keepdim=True)               # sigma_g / sum_{S_G} sigma
        s = torch.softmax(logits.view(T, Ng, N), dim=-1)               # per-group expert softmax
        c = (s * gscale.unsqueeze(-1)).view(T, E)                      # combined score, 0 off S_G
        order = _stable_desc_order(c)
        mask = _first_n_mask(order, K)                                 # global top-K, no quota
        if gate_norm == "softmax":
            # softmax over the K selected c values (c in [0,1], so no max-shift needed)
            ex = torch.exp(c) * mask
            gates = ex / ex.sum(-1, keepdim=True)
        elif gate_norm == "renorm":
            cm = c * mask
            gates = cm / cm.sum(-1, keepdim=True)
        else:
            raise ValueError(f"unknown gate_norm {gate_norm}")
        margin = min(_gap_at(torch.gather(sig, 1, gorder).detach(), Kg),
                     _gap_at(torch.gather(c, 1, order).detach(), K))
        probs = c
        out.update(group_logits=glogits, group_mask=gmask)
    else:
        raise ValueError(f"unknown router {router}")
    out.update(probs=probs, mask=mask, gates=gates, margin=margin)
    return out


# ----------------------------------------------------------------------------- aux losses (§4)
def aux_losses(r, expert_widths, router, num_experts_per_tok=2, topk_group=1,
               num_expert_groups=1, group_loss_delta=1024.0):
    """Every aux loss of one MoE layer with coefficient 1, as scalar tensors."""
    P, mask, gates = r["probs"], r["mask"], r["gates"]
    T, E = P.shape
    n = mask.sum(0).to(P.dtype)                     # tokens per expert (no gradient)
    f = n / n.sum()                                 # = n_e / (T*K) for fixed K, realised for top-p
    Pbar = P.mean(0)
    W = torch.tensor(expert_widths, dtype=P.dtype)
    logP = torch.log(torch.where(P > 0, P, torch.ones_like(P)))   # 0 log 0 = 0, finite grads
    L = {
        "load_balance": E * (f * Pbar).sum(),
        "p_penalty": E * (f * (W / W.mean()) * Pbar).sum(),
        "router_entropy": -(P * logP).sum(-1).mean(),
    }
    if router == "two_level":
        Ng, Kg, K = num_expert_groups, topk_group, num_experts_per_tok
        N = E // Ng
        Wg = W.view(Ng, N)[:, 0]                    # group width = width of its experts
        omega = (Wg - Wg.min() + group_loss_delta) / group_loss_delta
        Pg = torch.softmax(r["group_logits"], dim=-1).mean(0)       # softmax here, sigmoid routing
        fg = r["group_mask"].sum(0).to(P.dtype) / (T * Kg)
        L["group"] = Ng * (omega * Pg * fg).sum()
        L["intra_group"] = Kg * N * (gates.mean(0) * n / (T * K)).sum()
    else:
        L["group"] = torch.zeros((), dtype=P.dtype)
        L["intra_group"] = torch.zeros((), dtype=P.dtype)
    return L


# ----------------------------------------------------------------------------- model (§1-§2)
def rmsnorm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rope_cos_sin(T, hd, theta, dtype):
    """cos, sin [T, hd] in the rotate-half layout (frequencies repeated for both halves)."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
    ang = torch.outer(torch.arange(T, dtype=torch.float64), inv_freq)    # [T, hd/2]
    emb = torch.cat([ang, ang], dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], dim=-1)


def apply_rope(x, cos, sin):  # x [B, H, T, hd]
    return x * cos + rotate_half(x) * sin


def attention(x, p, pre, cfg):
    """Causal GQA self-attention with RoPE; x [B, T, d]."""
    B, T, d = x.shape
    H, KVH = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = d // H
    q = (x @ p[pre + "q_proj.weight"].t()).view(B, T, H, hd).transpose(1, 2)    # [B, H, T, hd]
    k = (x @ p[pre + "k_proj.weight"].t()).view(B, T, KVH, hd).transpose(1, 2)  # [B, KVH, T, hd]
    v = (x @ p[pre + "v_proj.weight"].t()).view(B, T, KVH, hd).transpose(1, 2)
    cos, sin = rope_cos_sin(T, hd, cfg["rope_theta"], x.dtype)
    q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
    k = k.repeat_interleave(H // KVH, dim=1)
    v = v.repeat_interleave(H // KVH, dim=1)
    att = (q @ k.transpose(-1, -2)) / math.sqrt(hd)                             # [B, H, T, T]
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    att = torch.softmax(att.masked_fill(~causal, float("-inf")), dim=-1)
    y = (att @ v).transpose(1, 2).reshape(B, T, H * hd)
    return y @ p[pre + "o_proj.weight"].t()


def swiglu(x, p, pre):
    """down(silu(gate x) * up x); weights pre+{gate,up,down}_proj.weight."""
    g = x @ p[pre + "gate_proj.weight"].t()
    u = x @ p[pre + "up_proj.weight"].t()
    return (F.silu(g) * u) @ p[pre + "down_proj.weight"].t()


def moe_ffn(x, p, pre, cfg):
    """Dropless MoE on tokens x [N, d]. Returns (output [N, d], routing dict)."""
    r = route(x, p[pre + "gate.weight"], cfg["router"], cfg["num_experts_per_tok"], cfg["top_p"],
              cfg["max_experts_per_tok"], p.get(pre + "group_gate.weight"),
              cfg["num_expert_groups"], cfg["experts_per_group"], cfg["topk_group"],
              cfg["gate_norm"])
    out = torch.zeros_like(x)
    for e in range(len(cfg["expert_widths"])):
        idx = r["mask"][:, e].nonzero().squeeze(1)
        if idx.numel() == 0:
            continue
        y = swiglu(x[idx], p, f"{pre}experts.{e}.")
        out = out.index_add(0, idx, y * r["gates"][idx, e:e + 1])
    if cfg["shared_expert_width"] > 0:
        out = out + swiglu(x, p, pre + "shared_experts.")
    return out, r


def forward(p, cfg, inputs, targets, step=0):
    """Returns logits [B,T,V], lm_loss, total loss, per-layer info list."""
    B, T = inputs.shape
    eps = cfg["rms_norm_eps"]
    x = p["model.embed_tokens.weight"][inputs]                          # [B, T, d]
    coefs = cfg["aux_loss_coefs"]
    aux_total = torch.zeros((), dtype=x.dtype)
    info = []
    for l in range(cfg["num_hidden_layers"]):
        pre = f"model.layers.{l}."
        h = x + attention(rmsnorm(x, p[pre + "input_layernorm.weight"], eps), p,
                          pre + "self_attn.", cfg)
        hn = rmsnorm(h, p[pre + "post_attention_layernorm.weight"], eps)
        if is_moe_layer(cfg, l):
            y, r = moe_ffn(hn.reshape(B * T, -1), p, pre + "mlp.", cfg)
            x = h + y.view(B, T, -1)
            L = aux_losses(r, cfg["expert_widths"], cfg["router"], cfg["num_experts_per_tok"],
                           cfg["topk_group"], cfg["num_expert_groups"], cfg["group_loss_delta"])
            for name, val in L.items():
                if name == "group" and step < cfg["group_loss_start_step"]:
                    continue
                if coefs[name] != 0.0:
                    aux_total = aux_total + coefs[name] * val
            info.append({"layer": l, "routing": r, "losses": L})
        else:
            x = h + swiglu(hn, p, pre + "mlp.")
    x = rmsnorm(x, p["model.norm.weight"], eps)
    head = p["model.embed_tokens.weight"] if cfg["tie_word_embeddings"] else p["lm_head.weight"]
    logits = x @ head.t()                                                # [B, T, V]
    lm_loss = F.cross_entropy(logits.reshape(B * T, -1), targets.reshape(B * T))
    return logits, lm_loss, lm_loss + aux_total, info


# ----------------------------------------------------------------------------- I/O and CLI
def load_params(ckpt_dir, cfg, dtype):
    raw, _ = read_safetensors(os.path.join(ckpt_dir, "model.safetensors"))
    if cfg["tie_word_embeddings"] and "lm_head.weight" in raw:
        print("warning: tied embeddings but lm_head.weight present; ignoring it", file=sys.stderr)
        del raw["lm_head.weight"]
    return {k: torch.tensor(v, dtype=dtype, requires_grad=True) for k, v in raw.items()}


def load_tokens(path):
    t, _ = read_safetensors(path)
    tok = torch.from_numpy(t["tokens"].astype(np.int64))
    assert tok.dim() == 2 and tok.shape[1] >= 2, f"tokens must be [B, T+1], got {tuple(tok.shape)}"
    return tok[:, :-1].contiguous(), tok[:, 1:].contiguous()


def run_reference(ckpt_dir, tokens_file, dtype=torch.float64, step=0, extras=False):
    """Forward + backward; returns ({name: np.ndarray} to write, summary dict)."""
    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)
    cfg = load_config(os.path.join(ckpt_dir, "config.json"))
    params = load_params(ckpt_dir, cfg, dtype)
    inputs, targets = load_tokens(tokens_file)
    logits, lm_loss, loss, info = forward(params, cfg, inputs, targets, step)
    loss.backward()
    out = {"logits": logits.detach().numpy(),
           "loss": loss.detach().reshape(1).numpy(),
           "lm_loss": lm_loss.detach().reshape(1).numpy()}
    for name, t in params.items():
        g = t.grad if t.grad is not None else torch.zeros_like(t)  # e.g. an expert with no tokens
        out["grad." + name] = g.detach().numpy()
    if extras:
        for it in info:
            l, r = it["layer"], it["routing"]
            for k, v in it["losses"].items():
                out[f"aux.layers.{l}.{k}"] = v.detach().reshape(1).numpy()
            out[f"routing.layers.{l}.gates"] = r["gates"].detach().numpy()
            out[f"routing.layers.{l}.tokens_per_expert"] = \
                r["mask"].sum(0).to(dtype).numpy()
    margins = [it["routing"]["margin"] for it in info]
    summary = {"loss": float(loss), "lm_loss": float(lm_loss),
               "min_routing_margin": min(margins) if margins else math.inf,
               "layers": [{k: float(v) for k, v in it["losses"].items()} for it in info]}
    return out, summary


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", required=True, help="dir with config.json, model.safetensors")
    ap.add_argument("--tokens-file", required=True, help="safetensors with `tokens` [B, T+1]")
    ap.add_argument("--out", required=True)
    ap.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    ap.add_argument("--step", type=int, default=0, help="training step (gates the group loss)")
    ap.add_argument("--extras", action="store_true", help="also write per-layer aux/routing")
    a = ap.parse_args()
    out, s = run_reference(a.checkpoint, a.tokens_file, getattr(torch, a.dtype), a.step, a.extras)
    write_safetensors(a.out, out, {"producer": "tools/torch_ref.py", "dtype": a.dtype,
                                   "step": str(a.step)})
    print(f"loss {s['loss']:.10g}  lm_loss {s['lm_loss']:.10g}  "
          f"min routing margin {s['min_routing_margin']:.3g}")
    for i, L in enumerate(s["layers"]):
        print(f"  moe layer #{i}: " + "  ".join(f"{k} {v:.8g}" for k, v in L.items()))
    if s["min_routing_margin"] < 1e-5:
        print("warning: a token is within 1e-5 of a routing decision boundary; an fp32 engine may "
              "select differently", file=sys.stderr)
    print(f"wrote {len(out)} tensors to {a.out}")


if __name__ == "__main__":
    main()
