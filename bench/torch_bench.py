#!/usr/bin/python3
"""PyTorch (float32, autograd, AdamW) training throughput for a mohge checkpoint, as JSON.

  /usr/bin/python3 bench/torch_bench.py --checkpoint DIR --batch B --seq T --steps N --warmup W \
      [--threads K] [--check] [--profile] [--no-fuse] [--seed S] [--bf16]

DIR holds config.json + model.safetensors (`build/mohge init CONFIG --out DIR`). Every step, like
build/bench/bench_train: new uniform random tokens in [0, vocab) (seeded), forward with LM loss +
aux losses, backward, gradient global-norm clip to 1.0, torch.optim.AdamW step (lr 1e-4, weight
decay 0.1 on matrices except the embedding, betas 0.9/0.95 as in the engine). tokens_per_s is
B*T*N over the N timed steps after W warm-up steps (token generation is not timed).

This is written as a competent PyTorch 1.13 user would write it for speed on CPU:
- nn.Module model, float32; q/k/v fused into one Linear and SwiGLU gate/up fused into one Linear
  (one bigger GEMM each; --no-fuse keeps the checkpoint's separate matrices);
- attention: one baddbmm (scale and additive causal mask fused into the QK^T GEMM), softmax, bmm
  (F.scaled_dot_product_attention only exists from 2.0);
- MoE: router -> top-k (top-p: top-max_k then a cumulative-probability cut) -> torchtitan/Megatron
  permute recipe: stable argsort of the chosen expert ids, bincount, one gather of all routed
  tokens, one SwiGLU per expert on its contiguous slice, gate multiply, one index_add back;
- aux losses from tools/torch_ref.py (aux_losses), the same statistics the engine uses;
- AdamW(foreach=True), zero_grad(set_to_none=True), nn.utils.clip_grad_norm_.
--check compares the first batch's loss and every gradient with tools/torch_ref.py (float32, and
the loss also with float64) before timing, in a child process (so peak_rss_mb is unaffected), adds
the result as "check" to the JSON, and fails (exit 1) if they disagree.
Threads: PyTorch's default unless --threads K (torch.set_num_threads).
--bf16: the forward under torch.autocast("cpu", dtype=torch.bfloat16) — PyTorch's mixed
precision (linear, matmul, bmm in bf16 through oneDNN; softmax and losses in fp32; fp32 weights
and optimizer), to compare with the engine's run.matmul_precision = "bf16".
"""
import argparse
import ctypes
import json
import math
import os
import resource
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import torch_ref as ref  # noqa: E402
from safetensors_io import read_safetensors  # noqa: E402


# ----------------------------------------------------------------------------- model
def _g(p):
    """p.grad, or zeros where no gradient flowed (e.g. an expert that got no tokens)."""
    return p.grad if p.grad is not None else torch.zeros_like(p)


class RMSNorm(nn.Module):
    def __init__(self, d, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class SwiGLU(nn.Module):
    def __init__(self, d, w, fuse):
        super().__init__()
        self.fuse, self.w = fuse, w
        if fuse:
            self.gate_up = nn.Linear(d, 2 * w, bias=False)
        else:
            self.gate_proj = nn.Linear(d, w, bias=False)
            self.up_proj = nn.Linear(d, w, bias=False)
        self.down_proj = nn.Linear(w, d, bias=False)

    def forward(self, x):
        if self.fuse:
            g, u = self.gate_up(x).split(self.w, dim=-1)
        else:
            g, u = self.gate_proj(x), self.up_proj(x)
        return self.down_proj(F.silu(g) * u)

    def load(self, raw, pre):
        if self.fuse:
            self.gate_up.weight.copy_(torch.cat([raw[pre + "gate_proj.weight"],
                                                 raw[pre + "up_proj.weight"]]))
        else:
            self.gate_proj.weight.copy_(raw[pre + "gate_proj.weight"])
            self.up_proj.weight.copy_(raw[pre + "up_proj.weight"])
        self.down_proj.weight.copy_(raw[pre + "down_proj.weight"])

    def grads(self, pre):
        if self.fuse:
            g, u = _g(self.gate_up.weight).split(self.w)
        else:
            g, u = _g(self.gate_proj.weight), _g(self.up_proj.weight)
        return {pre + "gate_proj.weight": g, pre + "up_proj.weight": u,
                pre + "down_proj.weight": _g(self.down_proj.weight)}


class Attention(nn.Module):
    def __init__(self, cfg, fuse):
        super().__init__()
        d = cfg["hidden_size"]
        self.H, self.KVH = cfg["num_attention_heads"], cfg["num_key_value_heads"]
        self.hd = d // self.H
        self.fuse = fuse
        qd, kvd = self.H * self.hd, self.KVH * self.hd
        self.split = (qd, kvd, kvd)
        if fuse:
            self.qkv = nn.Linear(d, qd + 2 * kvd, bias=False)
        else:
            self.q_proj = nn.Linear(d, qd, bias=False)
            self.k_proj = nn.Linear(d, kvd, bias=False)
            self.v_proj = nn.Linear(d, kvd, bias=False)
        self.o_proj = nn.Linear(qd, d, bias=False)

    def forward(self, x, cos, sin, mask_bias):
        B, T, _ = x.shape
        H, KVH, hd = self.H, self.KVH, self.hd
        if self.fuse:
            q, k, v = self.qkv(x).split(self.split, dim=-1)
        else:
            q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        q = q.view(B, T, H, hd).transpose(1, 2)                        # [B, H, T, hd]
        k = k.view(B, T, KVH, hd).transpose(1, 2)
        v = v.view(B, T, KVH, hd).transpose(1, 2)
        q, k = ref.apply_rope(q, cos, sin), ref.apply_rope(k, cos, sin)
        if KVH != H:
            k = k.repeat_interleave(H // KVH, dim=1)
            v = v.repeat_interleave(H // KVH, dim=1)
        q = q.reshape(B * H, T, hd)
        k = k.reshape(B * H, T, hd)
        v = v.reshape(B * H, T, hd)
        # scores = mask + (q k^T) / sqrt(hd) in one GEMM call; mask_bias is 0 / -inf [T, T]
        att = torch.baddbmm(mask_bias, q, k.transpose(1, 2), beta=1.0, alpha=1.0 / math.sqrt(hd))
        att = torch.softmax(att, dim=-1)
        y = torch.bmm(att, v).view(B, H, T, hd).transpose(1, 2).reshape(B, T, H * hd)
        return self.o_proj(y)

    def load(self, raw, pre):
        if self.fuse:
            self.qkv.weight.copy_(torch.cat([raw[pre + n + "_proj.weight"] for n in "qkv"]))
        else:
            for n in "qkv":
                getattr(self, n + "_proj").weight.copy_(raw[pre + n + "_proj.weight"])
        self.o_proj.weight.copy_(raw[pre + "o_proj.weight"])

    def grads(self, pre):
        if self.fuse:
            g = _g(self.qkv.weight).split(self.split)
        else:
            g = [_g(getattr(self, n + "_proj").weight) for n in "qkv"]
        out = {pre + n + "_proj.weight": t for n, t in zip("qkv", g)}
        out[pre + "o_proj.weight"] = _g(self.o_proj.weight)
        return out


class MoE(nn.Module):
    """Dropless MoE over tokens [N, d]; returns (output, routing dict for the aux losses)."""

    def __init__(self, cfg, fuse):
        super().__init__()
        d, widths = cfg["hidden_size"], cfg["expert_widths"]
        self.cfg = cfg
        self.E = len(widths)
        self.router = cfg["router"]
        self.gate = nn.Linear(d, self.E, bias=False)
        if self.router == "two_level":
            self.group_gate = nn.Linear(d, cfg["num_expert_groups"], bias=False)
        self.experts = nn.ModuleList([SwiGLU(d, w, fuse) for w in widths])
        self.shared = SwiGLU(d, cfg["shared_expert_width"], fuse) \
            if cfg["shared_expert_width"] > 0 else None

    def route(self, x):
        """-> chosen experts sel [N, K], gates [N, K], valid [N, K] bool or None, aux dict."""
        c, E = self.cfg, self.E
        logits = self.gate(x)                                          # [N, E]
        N = logits.shape[0]
        valid, glogits, gmask = None, None, None
        if self.router == "top_k":
            probs = torch.softmax(logits, dim=-1)
            score, sel = probs.topk(c["num_experts_per_tok"], dim=-1)
            gates = score / score.sum(-1, keepdim=True)
        elif self.router == "top_p":
            probs = torch.softmax(logits, dim=-1)
            kmax = min(c["max_experts_per_tok"] or E, E)
            score, sel = probs.topk(kmax, dim=-1)                      # sorted descending
            # smallest prefix whose cumulative probability reaches p, at most kmax experts
            k = (1 + (score.detach().cumsum(-1) < c["top_p"]).sum(-1)).clamp(max=kmax)
            valid = torch.arange(kmax).unsqueeze(0) < k.unsqueeze(1)
            score = score * valid
            gates = score / score.sum(-1, keepdim=True)
        elif self.router == "two_level":
            Ng, Kg = c["num_expert_groups"], c["topk_group"]
            glogits = self.group_gate(x)                               # [N, Ng]
            sig = torch.sigmoid(glogits)
            gsel = sig.detach().topk(Kg, dim=-1).indices
            gmask = torch.zeros(N, Ng, dtype=torch.bool).scatter_(1, gsel, True)
            sig_sel = sig * gmask
            gscale = sig_sel / sig_sel.sum(-1, keepdim=True)
            s = torch.softmax(logits.view(N, Ng, E // Ng), dim=-1)
            probs = (s * gscale.unsqueeze(-1)).view(N, E)              # combined c, 0 off S_G
            score, sel = probs.topk(c["num_experts_per_tok"], dim=-1)
            if c["gate_norm"] == "softmax":
                gates = torch.softmax(score, dim=-1)
            else:
                gates = score / score.sum(-1, keepdim=True)
        else:
            raise ValueError(f"unknown router {self.router}")
        mask = torch.zeros(N, E, dtype=torch.bool).scatter_(
            1, sel, True if valid is None else valid)
        dense_gates = torch.zeros(N, E, dtype=gates.dtype).scatter(1, sel, gates)
        aux = {"probs": probs, "mask": mask, "gates": dense_gates,
               "group_logits": glogits, "group_mask": gmask}
        return sel, gates, valid, aux

    def forward(self, x):
        N, d = x.shape
        sel, gates, valid, aux = self.route(x)
        K = sel.shape[1]
        # permute: one entry per (token, chosen expert), sorted by expert
        flat_e, flat_g = sel.reshape(-1), gates.reshape(-1)
        flat_t = torch.arange(N).repeat_interleave(K)
        if valid is not None:
            keep = valid.reshape(-1)
            flat_e, flat_g, flat_t = flat_e[keep], flat_g[keep], flat_t[keep]
        order = torch.argsort(flat_e, stable=True)
        counts = torch.bincount(flat_e, minlength=self.E).tolist()
        tok = flat_t[order]
        xin = x.index_select(0, tok)                                   # [M, d]
        ys = [ex(chunk) if n > 0 else chunk
              for ex, chunk, n in zip(self.experts, xin.split(counts), counts)]
        y = torch.cat(ys) * flat_g[order].unsqueeze(1)
        # unpermute: weighted sum back into token order
        out = torch.zeros_like(x).index_add(0, tok, y.to(x.dtype))  # bf16 under autocast
        if self.shared is not None:
            out = out + self.shared(x)
        return out, aux

    def load(self, raw, pre):
        self.gate.weight.copy_(raw[pre + "gate.weight"])
        if self.router == "two_level":
            self.group_gate.weight.copy_(raw[pre + "group_gate.weight"])
        for e, ex in enumerate(self.experts):
            ex.load(raw, f"{pre}experts.{e}.")
        if self.shared is not None:
            self.shared.load(raw, pre + "shared_experts.")

    def grads(self, pre):
        out = {pre + "gate.weight": _g(self.gate.weight)}
        if self.router == "two_level":
            out[pre + "group_gate.weight"] = _g(self.group_gate.weight)
        for e, ex in enumerate(self.experts):
            out.update(ex.grads(f"{pre}experts.{e}."))
        if self.shared is not None:
            out.update(self.shared.grads(pre + "shared_experts."))
        return out


class Block(nn.Module):
    def __init__(self, cfg, layer, fuse):
        super().__init__()
        d, eps = cfg["hidden_size"], cfg["rms_norm_eps"]
        self.input_layernorm = RMSNorm(d, eps)
        self.self_attn = Attention(cfg, fuse)
        self.post_attention_layernorm = RMSNorm(d, eps)
        self.is_moe = ref.is_moe_layer(cfg, layer)
        self.mlp = MoE(cfg, fuse) if self.is_moe else SwiGLU(d, cfg["intermediate_size"], fuse)

    def forward(self, x, cos, sin, mask_bias):
        h = x + self.self_attn(self.input_layernorm(x), cos, sin, mask_bias)
        hn = self.post_attention_layernorm(h)
        if self.is_moe:
            B, T, d = hn.shape
            y, aux = self.mlp(hn.reshape(B * T, d))
            return h + y.view(B, T, d), aux
        return h + self.mlp(hn), None


class Model(nn.Module):
    def __init__(self, cfg, T, fuse=True):
        super().__init__()
        self.cfg = cfg
        d, V = cfg["hidden_size"], cfg["vocab_size"]
        self.embed_tokens = nn.Embedding(V, d)
        self.layers = nn.ModuleList([Block(cfg, l, fuse) for l in range(cfg["num_hidden_layers"])])
        self.norm = RMSNorm(d, cfg["rms_norm_eps"])
        self.lm_head = None if cfg["tie_word_embeddings"] else nn.Linear(d, V, bias=False)
        hd = d // cfg["num_attention_heads"]
        cos, sin = ref.rope_cos_sin(T, hd, cfg["rope_theta"], torch.float32)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        mask = torch.full((T, T), float("-inf")).triu(1)               # 0 on/below the diagonal
        self.register_buffer("mask_bias", mask, persistent=False)

    def forward(self, inputs, targets, step=0):
        """-> (total loss, lm loss)."""
        cfg = self.cfg
        B, T = inputs.shape
        x = self.embed_tokens(inputs)
        cos, sin, mask_bias = self.cos[:T], self.sin[:T], self.mask_bias[:T, :T]
        coefs = cfg["aux_loss_coefs"]
        aux_total = 0.0
        for layer in self.layers:
            x, r = layer(x, cos, sin, mask_bias)
            if r is None:
                continue
            L = ref.aux_losses(r, cfg["expert_widths"], cfg["router"], cfg["num_experts_per_tok"],
                               cfg["topk_group"], cfg["num_expert_groups"],
                               cfg["group_loss_delta"])
            for name, val in L.items():
                if name == "group" and step < cfg["group_loss_start_step"]:
                    continue
                if coefs[name] != 0.0:
                    aux_total = aux_total + coefs[name] * val
        x = self.norm(x)
        head = self.embed_tokens.weight if self.lm_head is None else self.lm_head.weight
        logits = F.linear(x, head)
        lm_loss = F.cross_entropy(logits.view(B * T, -1), targets.reshape(B * T))
        return lm_loss + aux_total, lm_loss

    @torch.no_grad()
    def load(self, raw):
        raw = {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32))
               for k, v in raw.items()}
        self.embed_tokens.weight.copy_(raw["model.embed_tokens.weight"])
        for l, b in enumerate(self.layers):
            pre = f"model.layers.{l}."
            b.input_layernorm.weight.copy_(raw[pre + "input_layernorm.weight"])
            b.post_attention_layernorm.weight.copy_(raw[pre + "post_attention_layernorm.weight"])
            b.self_attn.load(raw, pre + "self_attn.")
            b.mlp.load(raw, pre + "mlp.")
        self.norm.weight.copy_(raw["model.norm.weight"])
        if self.lm_head is not None:
            self.lm_head.weight.copy_(raw["lm_head.weight"])

    def grads(self):
        """Gradients under the checkpoint's tensor names (fused matrices split back)."""
        out = {"model.embed_tokens.weight": _g(self.embed_tokens.weight),
               "model.norm.weight": _g(self.norm.weight)}
        for l, b in enumerate(self.layers):
            pre = f"model.layers.{l}."
            out[pre + "input_layernorm.weight"] = _g(b.input_layernorm.weight)
            out[pre + "post_attention_layernorm.weight"] = _g(b.post_attention_layernorm.weight)
            out.update(b.self_attn.grads(pre + "self_attn."))
            out.update(b.mlp.grads(pre + "mlp."))
        if self.lm_head is not None:
            out["lm_head.weight"] = _g(self.lm_head.weight)
        return out


# ----------------------------------------------------------------------------- helpers
def blas_threads():
    """OpenBLAS's own thread count (matmuls run there, not in ATen's OpenMP pool), or None."""
    for lib in ("libopenblas.so.0", "libopenblas.so"):
        try:
            f = ctypes.CDLL(lib).openblas_get_num_threads
            f.restype = ctypes.c_int
            return int(f())
        except (OSError, AttributeError):
            continue
    return None


# Below this fp32 matmul rate per thread PyTorch is running on the reference BLAS (libblas3:
# ~7 GFLOP/s on the project machine, where OpenBLAS gives ~60 per core): a comparison against it
# would inflate mohge's ratio ~25x, so it is refused.
MIN_MATMUL_GFLOPS_PER_THREAD = 20.0


def matmul_gflops():
    """PyTorch's fp32 matmul rate (1024^3, best of 5), GFLOP/s."""
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2 * 1024**3 / best / 1e9


def check_against_reference(cfg, raw, model, inputs, targets, step):
    """First-batch loss and gradients vs tools/torch_ref.py; returns a summary dict."""
    model.zero_grad(set_to_none=True)
    loss, lm_loss = model(inputs, targets, step)
    loss.backward()
    mine = model.grads()
    res = {"loss": float(loss), "lm_loss": float(lm_loss)}
    for dtype in (torch.float32, torch.float64):
        p = {k: torch.tensor(v, dtype=dtype, requires_grad=True) for k, v in raw.items()}
        if cfg["tie_word_embeddings"]:
            p.pop("lm_head.weight", None)
        _, rl, rloss, info = ref.forward(p, cfg, inputs, targets, step)
        tag = "ref_f32" if dtype == torch.float32 else "ref_f64"
        res[tag + "_loss"] = float(rloss)
        res[tag + "_lm_loss"] = float(rl)
        margins = [it["routing"]["margin"] for it in info]
        res[tag + "_min_routing_margin"] = min(margins) if margins else None
        if dtype == torch.float32:
            rloss.backward()
            worst, worst_name = 0.0, None
            for name, t in p.items():
                g_ref = t.grad if t.grad is not None else torch.zeros_like(t)
                g = mine[name]
                err = float((g - g_ref).abs().max()) / (float(g_ref.abs().max()) + 1e-12)
                if err > worst:
                    worst, worst_name = err, name
            res["max_grad_rel_err_vs_ref_f32"] = worst
            res["worst_grad"] = worst_name
    res["loss_rel_err_vs_ref_f32"] = abs(res["loss"] - res["ref_f32_loss"]) / abs(res["ref_f32_loss"])
    res["ok"] = res["loss_rel_err_vs_ref_f32"] < 1e-5 and res["max_grad_rel_err_vs_ref_f32"] < 1e-3
    model.zero_grad(set_to_none=True)
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", required=True, help="dir with config.json + model.safetensors")
    ap.add_argument("--batch", type=int, required=True)
    ap.add_argument("--seq", type=int, required=True)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: default)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--check", action="store_true",
                    help="first check loss + grads against tools/torch_ref.py (exit 1 on mismatch)")
    ap.add_argument("--check-only", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--no-fuse", action="store_true", help="separate q/k/v and gate/up matmuls")
    ap.add_argument("--no-foreach", action="store_true", help="AdamW(foreach=False)")
    ap.add_argument("--bf16", action="store_true", help="forward under CPU autocast to bfloat16")
    ap.add_argument("--allow-slow-blas", action="store_true",
                    help="measure even when PyTorch's matmul rate says it runs on the reference BLAS")
    ap.add_argument("--profile", metavar="N", type=int, default=0,
                    help="print the N most expensive ops (torch.profiler, one extra step) to stderr")
    a = ap.parse_args()
    if a.steps < 1:
        ap.error("--steps must be >= 1")

    check = None
    if a.check and not a.check_only:
        # In a child process, so that the reference's float64 copy of the model does not count
        # in this process's peak RSS.
        argv = [x for x in sys.argv[1:] if x != "--check"] + ["--check-only"]
        r = subprocess.run([sys.executable, os.path.abspath(__file__)] + argv,
                           stdout=subprocess.PIPE, text=True)
        if r.returncode not in (0, 1) or not r.stdout.strip():
            sys.exit(f"error: --check failed (exit {r.returncode})")
        check = json.loads(r.stdout)
        print("check: " + json.dumps(check), file=sys.stderr)
        if not check["ok"]:
            sys.exit("error: loss/gradients differ from tools/torch_ref.py")

    if a.threads > 0:
        torch.set_num_threads(a.threads)
    gemm = matmul_gflops()
    floor = MIN_MATMUL_GFLOPS_PER_THREAD * torch.get_num_threads()
    if gemm < floor and not a.check_only and not a.allow_slow_blas:
        sys.exit(f"error: PyTorch multiplies fp32 matrices at {gemm:.1f} GFLOP/s on {torch.get_num_threads()} "
                 f"threads (< {floor:.0f}): it runs on the reference BLAS, which no PyTorch user has; install "
                 "an optimised one (apt-get install libopenblas0-openmp, or scripts/install_deps.sh --bench) "
                 "or pass --allow-slow-blas")
    torch.manual_seed(a.seed)
    cfg = ref.load_config(os.path.join(a.checkpoint, "config.json"))
    raw, _ = read_safetensors(os.path.join(a.checkpoint, "model.safetensors"))
    B, T, V = a.batch, a.seq, cfg["vocab_size"]
    model = Model(cfg, T, fuse=not a.no_fuse)
    model.load(raw)
    model.train()

    gen = torch.Generator().manual_seed(a.seed)

    def batch():
        tok = torch.randint(0, V, (B, T + 1), generator=gen)
        return tok[:, :-1].contiguous(), tok[:, 1:].contiguous()

    if a.check_only:  # the first training step's batch, at step 0
        inputs, targets = batch()
        res = check_against_reference(cfg, raw, model, inputs, targets, 0)
        print(json.dumps(res))
        sys.exit(0 if res["ok"] else 1)
    del raw

    # as the engine: decay matrices, not norms or the embedding
    named = list(model.named_parameters())
    decay = [p for n, p in named if p.dim() >= 2 and "embed_tokens" not in n]
    no_decay = [p for n, p in named if not (p.dim() >= 2 and "embed_tokens" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.95), eps=1e-8, foreach=not a.no_foreach)
    params = list(model.parameters())

    def train_step(inputs, targets, step):
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.bf16):
            loss, lm_loss = model(inputs, targets, step)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        return loss, gnorm

    secs, loss, gnorm = 0.0, None, None
    for s in range(a.warmup + a.steps):
        inputs, targets = batch()
        t0 = time.perf_counter()
        loss, gnorm = train_step(inputs, targets, s)
        dt = time.perf_counter() - t0
        if s >= a.warmup:
            secs += dt
    loss = float(loss)

    if a.profile:
        from torch.profiler import profile, ProfilerActivity
        inputs, targets = batch()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            train_step(inputs, targets, a.warmup + a.steps)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=a.profile),
              file=sys.stderr)

    n_moe = sum(ref.is_moe_layer(cfg, l) for l in range(cfg["num_hidden_layers"]))
    out = {
        "checkpoint": a.checkpoint,
        "torch": torch.__version__,
        "num_threads": torch.get_num_threads(),
        "blas_threads": blas_threads(),
        "matmul_gflops": gemm,
        "batch": B, "seq_len": T, "steps": a.steps, "warmup": a.warmup,
        "tokens_per_s": B * T * a.steps / secs,
        "seconds_per_step": secs / a.steps,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "last_loss": loss,
        "last_grad_norm": float(gnorm),
        "params": sum(p.numel() for p in params),
        "fused_matmuls": not a.no_fuse,
        "adamw_foreach": not a.no_foreach,
        "autocast_bf16": a.bf16,
        "config": {
            "model_type": cfg.get("model_type", cfg["ffn_kind"]),
            "ffn_kind": cfg["ffn_kind"], "router": cfg["router"] if n_moe else None,
            "vocab_size": V, "hidden_size": cfg["hidden_size"],
            "num_hidden_layers": cfg["num_hidden_layers"], "moe_layers": n_moe,
            "num_attention_heads": cfg["num_attention_heads"],
            "num_key_value_heads": cfg["num_key_value_heads"],
            "intermediate_size": cfg["intermediate_size"],
            "expert_widths": cfg["expert_widths"] if n_moe else [],
            "shared_expert_width": cfg["shared_expert_width"],
            "tie_word_embeddings": cfg["tie_word_embeddings"],
        },
    }
    if check is not None:
        out["check"] = check
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
