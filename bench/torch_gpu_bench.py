#!/usr/bin/env python3
"""The configs/gpu models in PyTorch on one GPU (bf16 autocast, fused AdamW), as JSON: the
comparison for the CUDA backend's benchmark (issue 10), run by scripts/gpu_check.sh.

  python3 bench/torch_gpu_bench.py configs/gpu/mohge_3b.toml [--steps N] [--warmup W]

Written as a PyTorch user would for speed (PyTorch >= 2.8): fp32 master weights, the forward
under torch.autocast(bfloat16), F.scaled_dot_product_attention (causal, GQA), SwiGLU with gate
and up fused in one matrix, torch.optim.AdamW(fused=True), gradient clipping at 1.0. Experts:
tokens sorted by expert (torchtitan's permute), then torch._grouped_mm over each group of
equal-width experts (one group for moe, 8 width groups for mohge); if _grouped_mm is missing or
refuses the shapes, a loop over experts, and the JSON says which ran ("experts"). Routing as the
engine's: top-k of the router softmax (moe), or top groups then top experts within them (mohge,
gate weights a softmax over the chosen logits); the Switch load-balance loss is added.
Every step: new uniform random tokens. tokens_per_s is batch·seq·steps over the timed steps;
MFU = tokens/s × (6 × activated matmul parameters + 6·L·d·T) / 989e12, activated expert width
counted as K × the mean expert width (uniform routing). Peak memory: torch.cuda.max_memory_allocated.
"""
import argparse
import json
import math
import sys
import time
import tomllib

import torch
import torch.nn as nn
import torch.nn.functional as F

ALIGN = 16  # rows per expert are padded to a multiple of this (bf16 grouped GEMM alignment)


def expert_widths(m, moe):
    if moe.get("expert_widths"):
        return list(moe["expert_widths"])
    if m["ffn_kind"] == "moe":
        return [moe.get("expert_width", 512)] * moe.get("num_experts", 8)
    ng, n = moe["num_expert_groups"], moe["experts_per_group"]
    return [moe.get("group_width_start", 384) + g * moe.get("group_width_step", 128) for g in range(ng) for _ in range(n)]


class SwiGLU(nn.Module):
    def __init__(self, d, w):
        super().__init__()
        self.gate_up = nn.Linear(d, 2 * w, bias=False)
        self.down = nn.Linear(w, d, bias=False)

    def forward(self, x):
        g, u = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(g) * u)


class Experts(nn.Module):
    """Experts of one width: weights stacked [n, out, in] for torch._grouped_mm."""

    def __init__(self, n, d, w, std):
        super().__init__()
        self.w13 = nn.Parameter(torch.randn(n, 2 * w, d) * std)
        self.w2 = nn.Parameter(torch.randn(n, d, w) * std)

    def forward(self, x, counts, use_grouped):
        if use_grouped:
            offs = torch.cumsum(counts, 0, dtype=torch.int32)
            h = torch._grouped_mm(x, self.w13.to(torch.bfloat16).transpose(-2, -1), offs=offs)
            g, u = h.chunk(2, dim=-1)
            return torch._grouped_mm((F.silu(g) * u).contiguous(), self.w2.to(torch.bfloat16).transpose(-2, -1), offs=offs)
        outs, start = [], 0
        for e, c in enumerate(counts.tolist()):
            h = x[start:start + c] @ self.w13[e].to(x.dtype).t()
            g, u = h.chunk(2, dim=-1)
            outs.append((F.silu(g) * u) @ self.w2[e].to(x.dtype).t())
            start += c
        return torch.cat(outs)


class MoE(nn.Module):
    def __init__(self, m, moe, std):
        super().__init__()
        d = m["hidden_size"]
        self.kind = m["ffn_kind"]
        self.widths = expert_widths(m, moe)
        self.E, self.K = len(self.widths), moe.get("num_experts_per_tok", 2)
        self.gate = nn.Linear(d, self.E, bias=False)
        if self.kind == "mohge":
            self.Ng, self.Kg = moe["num_expert_groups"], moe.get("topk_group", 1)
            self.group_gate = nn.Linear(d, self.Ng, bias=False)
        # consecutive experts of equal width form one stack (a width group)
        self.stacks, self.stack_of = nn.ModuleList(), []
        e = 0
        while e < self.E:
            f = e
            while f < self.E and self.widths[f] == self.widths[e]:
                f += 1
            self.stacks.append(Experts(f - e, d, self.widths[e], std))
            self.stack_of.append((e, f))
            e = f
        s = moe.get("shared_expert_width", 0)
        self.shared = SwiGLU(d, s) if s else None
        self.use_grouped = hasattr(torch, "_grouped_mm")
        self.lb_coef = 0.01

    def route(self, x):
        logits = self.gate(x).float()
        if self.kind == "mohge":
            top_g = self.group_gate(x).float().topk(self.Kg, dim=-1).indices
            n = self.E // self.Ng
            allowed = torch.zeros(x.shape[0], self.Ng, dtype=torch.bool, device=x.device).scatter_(1, top_g, True)
            masked = logits.masked_fill(~allowed.repeat_interleave(n, dim=1), float("-inf"))
            chosen = masked.topk(self.K, dim=-1).indices
            weights = torch.softmax(logits.gather(1, chosen), dim=-1)
        else:
            probs = torch.softmax(logits, dim=-1)
            weights, chosen = probs.topk(self.K, dim=-1)
        frac = torch.bincount(chosen.flatten(), minlength=self.E).float() / chosen.numel()
        self.aux = self.lb_coef * self.E * (frac * torch.softmax(logits, dim=-1).mean(0)).sum()
        return chosen, weights

    def forward(self, x):
        shape = x.shape
        x = x.reshape(-1, shape[-1])
        chosen, weights = self.route(x)
        flat = chosen.flatten()
        order = torch.argsort(flat, stable=True)
        token, sorted_e = order // self.K, flat[order]
        # each expert's rows start at a multiple of ALIGN (torchtitan's token-group alignment for
        # grouped GEMMs); the padding rows are zero and their outputs are never read
        counts = torch.bincount(flat, minlength=self.E)
        padded = (counts + ALIGN - 1) // ALIGN * ALIGN
        start, pstart = torch.cumsum(counts, 0) - counts, torch.cumsum(padded, 0) - padded
        dest = pstart[sorted_e] + torch.arange(flat.numel(), device=x.device) - start[sorted_e]
        bounds = torch.cumsum(padded, 0).tolist()  # one host sync per layer
        xs = torch.zeros(bounds[-1], x.shape[1], dtype=torch.bfloat16, device=x.device)
        xs[dest] = x[token].to(torch.bfloat16)
        outs = []
        for (e, f), stack in zip(self.stack_of, self.stacks):
            row0 = bounds[e - 1] if e else 0
            outs.append(stack(xs[row0:bounds[f - 1]], padded[e:f], self.use_grouped))
        ys = torch.cat(outs)[dest] * weights.flatten()[order].unsqueeze(1).to(torch.bfloat16)
        y = torch.zeros_like(x, dtype=ys.dtype).index_add_(0, token, ys)
        if self.shared is not None:
            y = y + self.shared(x)
        return y.reshape(shape)


class Block(nn.Module):
    def __init__(self, m, moe, layer, std):
        super().__init__()
        d, H = m["hidden_size"], m["num_heads"]
        self.H, self.KVH, self.hd = H, m.get("num_kv_heads", H), d // H
        self.ln1, self.ln2 = nn.RMSNorm(d, eps=1e-6), nn.RMSNorm(d, eps=1e-6)
        self.qkv = nn.Linear(d, (H + 2 * self.KVH) * self.hd, bias=False)
        self.o = nn.Linear(H * self.hd, d, bias=False)
        dense = m["ffn_kind"] == "dense" or layer < m.get("first_dense_layers", 0)
        self.ffn = SwiGLU(d, m["intermediate_size"]) if dense else MoE(m, moe, std)

    def forward(self, x, cos, sin):
        B, T, _ = x.shape
        q, k, v = self.qkv(self.ln1(x)).split([self.H * self.hd, self.KVH * self.hd, self.KVH * self.hd], dim=-1)
        q, k, v = (t.view(B, T, -1, self.hd).transpose(1, 2) for t in (q, k, v))
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=self.KVH != self.H)
        h = x + self.o(a.transpose(1, 2).reshape(B, T, -1))
        return h + self.ffn(self.ln2(h))


def rope(x, cos, sin):
    x1, x2 = x.chunk(2, dim=-1)
    return (x * cos + torch.cat([-x2, x1], dim=-1) * sin).to(x.dtype)


class Model(nn.Module):
    def __init__(self, m, moe):
        super().__init__()
        std = m.get("init_std", 0.02)
        self.embed = nn.Embedding(m["vocab_size"], m["hidden_size"])
        self.blocks = nn.ModuleList(Block(m, moe, l, std) for l in range(m["num_layers"]))
        self.norm = nn.RMSNorm(m["hidden_size"], eps=1e-6)
        self.head = nn.Linear(m["hidden_size"], m["vocab_size"], bias=False)
        hd = m["hidden_size"] // m["num_heads"]
        inv = m.get("rope_theta", 10000.0) ** (-torch.arange(0, hd, 2, dtype=torch.float64) / hd)
        ang = torch.arange(m["max_seq_len"], dtype=torch.float64)[:, None] * inv[None]
        self.register_buffer("cos", torch.cat([ang.cos(), ang.cos()], -1).float(), persistent=False)
        self.register_buffer("sin", torch.cat([ang.sin(), ang.sin()], -1).float(), persistent=False)

    def forward(self, tokens, targets):
        T = tokens.shape[1]
        x = self.embed(tokens)
        for b in self.blocks:
            x = b(x, self.cos[:T], self.sin[:T])
        loss = F.cross_entropy(self.head(self.norm(x)).flatten(0, 1).float(), targets.flatten())
        aux = sum(b.ffn.aux for b in self.blocks if isinstance(b.ffn, MoE))
        return loss + aux


def activated_matmul_params(m, moe):
    d, L, V, H = m["hidden_size"], m["num_layers"], m["vocab_size"], m["num_heads"]
    hd, kvh = d // H, m.get("num_kv_heads", H)
    attn = d * (H + 2 * kvh) * hd + H * hd * d
    total = L * attn + V * d
    for l in range(L):
        if m["ffn_kind"] == "dense" or l < m.get("first_dense_layers", 0):
            total += 3 * d * m["intermediate_size"]
        else:
            w = expert_widths(m, moe)
            k = moe.get("num_experts_per_tok", 2)
            total += d * len(w) + (d * moe["num_expert_groups"] if m["ffn_kind"] == "mohge" else 0)
            total += 3 * d * (k * sum(w) / len(w) + moe.get("shared_expert_width", 0))
    return total


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("config")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=3)
    a = ap.parse_args()
    with open(a.config, "rb") as f:
        cfg = tomllib.load(f)
    m, moe, tr = cfg["model"], cfg.get("moe", {}), cfg["train"]
    B, T, V = tr["batch_size"], tr["seq_len"], m["vocab_size"]
    torch.manual_seed(0)
    dev = torch.device("cuda")
    model = Model(m, moe).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1, fused=True)
    gen = torch.Generator(device=dev).manual_seed(1)
    moes = [b.ffn for b in model.blocks if isinstance(b.ffn, MoE)]

    def step():
        tokens = torch.randint(0, V, (B, T), device=dev, generator=gen)
        targets = torch.randint(0, V, (B, T), device=dev, generator=gen)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(tokens, targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    try:  # the first warm-up step: torch._grouped_mm may be missing or refuse (forward or backward)
        step()
    except (RuntimeError, TypeError, AttributeError) as err:
        if not moes or not moes[0].use_grouped:
            raise
        print(f"torch._grouped_mm failed ({str(err)[:200]}): experts run as a loop", file=sys.stderr)
        for x in moes:
            x.use_grouped = False
        opt.zero_grad(set_to_none=True)
        step()
    secs = 0.0
    for s in range(1, a.warmup + a.steps):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        loss = step()
        torch.cuda.synchronize()
        if s >= a.warmup:
            secs += time.perf_counter() - t0
    tps = B * T * a.steps / secs
    fpt = 6 * activated_matmul_params(m, moe) + 6 * m["num_layers"] * m["hidden_size"] * T
    experts = "-" if not moes else ("grouped_mm" if all(x.use_grouped for x in moes) else "loop")
    print(json.dumps({"config": a.config, "torch": torch.__version__, "device": torch.cuda.get_device_name(),
                      "batch": B, "seq_len": T, "steps": a.steps, "tokens_per_s": tps,
                      "mfu": tps * fpt / 989e12, "gflop_per_token": fpt / 1e9, "experts": experts,
                      "peak_mem_gib": torch.cuda.max_memory_allocated() / 2**30, "last_loss": loss.item(),
                      "params": sum(p.numel() for p in model.parameters())}, indent=2))


if __name__ == "__main__":
    main()
