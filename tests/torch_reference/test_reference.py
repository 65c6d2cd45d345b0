#!/usr/bin/python3
"""Self-tests of the PyTorch reference (tools/torch_ref.py) and its helper tools.

  /usr/bin/python3 tests/torch_reference/test_reference.py [-k SUBSTRING] [-v]

(a) autograd gradients vs central finite differences, float64, every model kind, all aux-loss
    coefficients 1 (routing checked unchanged under every perturbation);
(b) routers + aux losses reproduce /work/shared/golden/routing.json (SPEC §8) to 1e-6;
(c) RoPE rotate-half equals a complex-number rotation (and scores depend on m - n only);
(d) P-Penalty equals load balance for equal widths (SPEC §4), differs for unequal ones;
plus tie-breaking, MoE gather path vs a per-token loop, the group-loss start step, safetensors
round trip and the three CLIs end to end (compare_tensors exit codes, fp32 vs fp64 agreement).
Prints `N passed, M failed`; exits 1 on any failure.
"""
import json
import math
import os
import subprocess
import sys
import tempfile
import traceback

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOLS = os.path.join(ROOT, "tools")
sys.path.insert(0, TOOLS)
import make_test_checkpoint as mtc  # noqa: E402
import torch_ref as ref  # noqa: E402
from safetensors_io import read_safetensors, write_safetensors  # noqa: E402

GOLDEN = os.environ.get("MOHGE_GOLDEN", "/work/shared/golden/routing.json")
PY = sys.executable
TESTS = []


def test(fn):
    TESTS.append(fn)
    return fn


# ----------------------------------------------------------------------------- helpers
def tiny_model(kind, seed, tie=False, router=None, gate_norm="softmax"):
    """float64 params + cfg + tokens for a tiny model with all aux coefficients = 1."""
    cfg = mtc.make_config(kind, tie, router, gate_norm, all_coefs=True)
    cfg.update(vocab_size=16, hidden_size=8, num_attention_heads=2, num_key_value_heads=1,
               intermediate_size=12)
    cfg["aux_loss_coefs"] = {k: 1.0 for k in ref.LOSS_NAMES}
    cfg_path = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
    json.dump(cfg, cfg_path)
    cfg_path.close()
    cfg = ref.load_config(cfg_path.name)  # exercise the same defaults path as the CLI
    os.unlink(cfg_path.name)
    rng = np.random.default_rng(seed)
    w = mtc.make_weights(cfg, rng, std=0.3)
    params = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in w.items()}
    tok = torch.from_numpy(rng.integers(0, cfg["vocab_size"], size=(2, 6)))
    return cfg, params, tok[:, :-1], tok[:, 1:]


def masks(info):
    return [it["routing"]["mask"].clone() for it in info]


def finite_difference_check(kind, seed=0, n_per_tensor=6, **kw):
    # find a seed whose routing is far from every decision boundary
    for s in range(seed, seed + 200):
        cfg, p, x, y = tiny_model(kind, s, **kw)
        _, _, loss, info = ref.forward(p, cfg, x, y)
        if all(it["routing"]["margin"] > 1e-3 for it in info):
            break
    loss.backward()
    base_masks = masks(info)
    rng = np.random.default_rng(seed + 1)
    eps, worst, n_checked = 1e-6, 0.0, 0
    for name, t in p.items():
        g = t.grad if t.grad is not None else torch.zeros_like(t)
        flat = t.detach().view(-1)
        full = "gate" in name and "proj" not in name          # every entry of router weights
        idxs = range(flat.numel()) if full else rng.choice(flat.numel(),
                                                           min(n_per_tensor, flat.numel()),
                                                           replace=False)
        for i in idxs:
            vals = []
            for sgn in (+1, -1):
                with torch.no_grad():
                    orig = flat[i].item()
                    flat[i] = orig + sgn * eps
                    _, _, l2, info2 = ref.forward(p, cfg, x, y)
                    flat[i] = orig
                for m0, m1 in zip(base_masks, masks(info2)):
                    assert torch.equal(m0, m1), f"{kind}: routing changed perturbing {name}[{i}]"
                vals.append(l2.item())
            fd = (vals[0] - vals[1]) / (2 * eps)
            ad = g.view(-1)[i].item()
            err = abs(fd - ad)
            worst = max(worst, err / (1e-6 + abs(ad)))
            assert err <= 1e-7 + 1e-5 * abs(ad), \
                f"{kind}: {name}[{i}] autograd {ad:.10g} vs finite diff {fd:.10g}"
            n_checked += 1
    return n_checked, worst


for _kind, _kw in [("dense", {}), ("dense", {"tie": True}), ("moe", {}),
                   ("moe", {"router": "top_p"}), ("hmoe", {}), ("hmoe", {"router": "top_k"}),
                   ("mohge", {}), ("mohge", {"gate_norm": "renorm", "tie": True})]:
    def _t(kind=_kind, kw=_kw):
        n, worst = finite_difference_check(kind, **kw)
        return f"{n} entries, max |fd-ad|/(|ad|+1e-6) {worst:.1e}"
    _t.__name__ = "a_gradcheck_" + _kind + "".join(f"_{k}={v}" for k, v in _kw.items())
    test(_t)


# ----------------------------------------------------------------------------- (b) golden
def golden_cases():
    with open(GOLDEN) as f:
        return json.load(f)["cases"]


def route_case(c):
    x = torch.tensor(c["x"], dtype=torch.float64)
    gw = torch.tensor(c["gate_weight"], dtype=torch.float64)
    if c["router"] == "two_level":
        Ng, N = c["num_expert_groups"], c["experts_per_group"]
        widths = [w for w in c["group_widths"] for _ in range(N)]
        r = ref.route(x, gw, "two_level", c["num_experts_per_tok"],
                      group_gate_weight=torch.tensor(c["group_gate_weight"], dtype=torch.float64),
                      num_expert_groups=Ng, experts_per_group=N, topk_group=c["topk_group"],
                      gate_norm=c["gate_norm"])
        L = ref.aux_losses(r, widths, "two_level", c["num_experts_per_tok"], c["topk_group"],
                           Ng, c["group_loss_delta"])
    else:
        widths = c["expert_widths"]
        r = ref.route(x, gw, c["router"], c.get("K", 2), c.get("top_p", 0.6),
                      c.get("max_experts_per_tok"))
        L = ref.aux_losses(r, widths, c["router"], c.get("K", 2))
    return r, L


@test
def b_golden_routing():
    cases = golden_cases()
    assert cases, "no golden cases"
    for c in cases:
        r, L = route_case(c)
        exp = c["expected"]
        for t in range(c["T"]):
            sel = r["mask"][t].nonzero().squeeze(1).tolist()
            assert sel == exp["experts"][t], f"{c['name']} token {t}: {sel} vs {exp['experts'][t]}"
            wts = r["gates"][t, sel].tolist()
            assert np.allclose(wts, exp["weights"][t], rtol=0, atol=1e-9), \
                f"{c['name']} token {t}: weights {wts} vs {exp['weights'][t]}"
        assert r["mask"].sum(0).tolist() == exp["tokens_per_expert"], c["name"]
        if "tokens_per_group" in exp:
            assert r["group_mask"].sum(0).tolist() == exp["tokens_per_group"], c["name"]
        n_loss = 0
        for k, v in exp.items():
            if k.startswith("loss_"):
                got = L[k[len("loss_"):]].item()
                assert abs(got - v) <= 1e-6 * max(1.0, abs(v)), f"{c['name']} {k}: {got} vs {v}"
                n_loss += 1
        assert n_loss >= 2, c["name"]
    return f"{len(cases)} cases: " + ", ".join(c["name"] for c in cases)


# ----------------------------------------------------------------------------- (c) RoPE
@test
def c_rope_matches_complex_rotation():
    torch.manual_seed(0)
    B, H, T, hd, theta = 2, 3, 7, 8, 10000.0
    x = torch.randn(B, H, T, hd, dtype=torch.float64)
    cos, sin = ref.rope_cos_sin(T, hd, theta, torch.float64)
    got = ref.apply_rope(x, cos, sin)
    z = torch.complex(x[..., : hd // 2], x[..., hd // 2:])           # pair (j, j + hd/2)
    freq = torch.tensor([theta ** (-2.0 * j / hd) for j in range(hd // 2)], dtype=torch.float64)
    pos = torch.arange(T, dtype=torch.float64)
    rot = torch.polar(torch.ones(T, hd // 2, dtype=torch.float64), pos[:, None] * freq[None])
    zr = z * rot
    want = torch.cat([zr.real, zr.imag], dim=-1)
    assert torch.allclose(got, want, atol=1e-12), float((got - want).abs().max())
    # relative-position property: <R_m q, R_n k> depends on m - n only
    q, k = torch.randn(hd, dtype=torch.float64), torch.randn(hd, dtype=torch.float64)
    qs, ks = q.expand(T, hd), k.expand(T, hd)
    s = ref.apply_rope(qs, cos, sin) @ ref.apply_rope(ks, cos, sin).t()      # [T, T]
    assert abs(s[5, 2] - s[4, 1]) < 1e-12 and abs(s[3, 3] - s[0, 0]) < 1e-12
    assert torch.equal(ref.apply_rope(x[:, :, :1], cos[:1], sin[:1]), x[:, :, :1])  # pos 0


@test
def c_attention_matches_naive_loop():
    """Causal GQA attention vs explicit loops: head h uses kv head h // (H/KVH), 1/sqrt(hd)."""
    torch.manual_seed(2)
    B, T, d, H, KVH = 2, 5, 12, 6, 2
    hd, g = d // H, H // KVH
    cfg = {"num_attention_heads": H, "num_key_value_heads": KVH, "rope_theta": 500.0}
    p = {"a.q_proj.weight": torch.randn(H * hd, d, dtype=torch.float64),
         "a.k_proj.weight": torch.randn(KVH * hd, d, dtype=torch.float64),
         "a.v_proj.weight": torch.randn(KVH * hd, d, dtype=torch.float64),
         "a.o_proj.weight": torch.randn(d, H * hd, dtype=torch.float64)}
    x = torch.randn(B, T, d, dtype=torch.float64)
    got = ref.attention(x, p, "a.", cfg)

    def rot(v, pos):  # complex-pair rotation, independent of rotate_half
        z = torch.complex(v[: hd // 2], v[hd // 2:])
        f = torch.tensor([500.0 ** (-2.0 * j / hd) for j in range(hd // 2)], dtype=torch.float64)
        z = z * torch.polar(torch.ones_like(f), pos * f)
        return torch.cat([z.real, z.imag])

    want = torch.zeros(B, T, d, dtype=torch.float64)
    for b in range(B):
        for t in range(T):
            heads = []
            for h in range(H):
                kvh = h // g
                q = rot(p["a.q_proj.weight"][h * hd:(h + 1) * hd] @ x[b, t], t)
                ks = [rot(p["a.k_proj.weight"][kvh * hd:(kvh + 1) * hd] @ x[b, s], s)
                      for s in range(t + 1)]
                vs = [p["a.v_proj.weight"][kvh * hd:(kvh + 1) * hd] @ x[b, s] for s in range(t + 1)]
                a = torch.softmax(torch.stack([q @ k for k in ks]) / math.sqrt(hd), 0)
                heads.append(sum(a[s] * vs[s] for s in range(t + 1)))
            want[b, t] = p["a.o_proj.weight"] @ torch.cat(heads)
    assert torch.allclose(got, want, atol=1e-10), float((got - want).abs().max())


# ----------------------------------------------------------------------------- (d) P-Penalty
@test
def d_p_penalty_equals_load_balance_for_equal_widths():
    torch.manual_seed(1)
    x = torch.randn(40, 16, dtype=torch.float64)
    for router, kw in [("top_k", {}), ("top_p", {"top_p": 0.6, "max_experts_per_tok": 4}),
                       ("two_level", {"group_gate_weight": torch.randn(4, 16, dtype=torch.float64),
                                      "num_expert_groups": 4, "experts_per_group": 2,
                                      "topk_group": 2})]:
        gw = torch.randn(8, 16, dtype=torch.float64, requires_grad=True)
        r = ref.route(x, gw, router, 3, **kw)
        La = ref.aux_losses(r, [48] * 8, router, 3, 2, 4)
        assert abs(La["p_penalty"] - La["load_balance"]) < 1e-12, router
        ga = torch.autograd.grad(La["p_penalty"], gw, retain_graph=True)[0]
        gb = torch.autograd.grad(La["load_balance"], gw, retain_graph=True)[0]
        assert torch.allclose(ga, gb, atol=1e-14), router
        Lb = ref.aux_losses(r, [8, 16, 24, 32, 40, 48, 56, 64], router, 3, 2, 4)
        assert abs(Lb["p_penalty"] - Lb["load_balance"]) > 1e-6, router


# ----------------------------------------------------------------------------- extra checks
@test
def e_ties_go_to_lower_index():
    x = torch.randn(3, 4, dtype=torch.float64)
    gw = torch.zeros(6, 4, dtype=torch.float64)                      # all experts tie
    r = ref.route(x, gw, "top_k", 2)
    assert r["mask"].nonzero()[:, 1].tolist() == [0, 1] * 3
    r = ref.route(x, gw, "top_p", top_p=0.4, max_experts_per_tok=6)  # 1/6 each: need 3
    assert r["mask"].nonzero()[:, 1].tolist() == [0, 1, 2] * 3
    r = ref.route(x, gw, "two_level", 3, group_gate_weight=torch.zeros(3, 4, dtype=torch.float64),
                  num_expert_groups=3, experts_per_group=2, topk_group=2)
    assert r["group_mask"].nonzero()[:, 1].tolist() == [0, 1] * 3
    assert r["mask"].nonzero()[:, 1].tolist() == [0, 1, 2] * 3


@test
def e_top_p_bounds():
    x = torch.eye(4, dtype=torch.float64)
    gw = torch.diag(torch.tensor([10.0, 0.0, 0.0, 0.0], dtype=torch.float64))  # token 0 sharp
    r = ref.route(x, gw, "top_p", top_p=0.6, max_experts_per_tok=2)
    k = r["mask"].sum(1).tolist()
    assert k[0] == 1 and all(v == 2 for v in k[1:]), k   # >= 1 kept; clamp at max_k (need 3)
    assert torch.allclose(r["gates"].sum(1), torch.ones(4, dtype=torch.float64))


@test
def e_moe_layer_matches_per_token_loop():
    for kind in ("hmoe", "mohge"):
        cfg, p, _, _ = tiny_model(kind, 3)
        pre = "model.layers.1.mlp."
        x = torch.randn(9, cfg["hidden_size"], dtype=torch.float64)
        out, r = ref.moe_ffn(x, p, pre, cfg)
        for t in range(9):
            want = torch.zeros(cfg["hidden_size"], dtype=torch.float64)
            for e in r["mask"][t].nonzero().squeeze(1).tolist():
                want = want + r["gates"][t, e] * ref.swiglu(x[t], p, f"{pre}experts.{e}.")
            if cfg["shared_expert_width"]:
                want = want + ref.swiglu(x[t], p, pre + "shared_experts.")
            assert torch.allclose(out[t], want, atol=1e-12), (kind, t)


@test
def e_group_loss_start_step():
    cfg, p, x, y = tiny_model("mohge", 0)
    cfg["aux_loss_coefs"] = {k: 0.0 for k in ref.LOSS_NAMES}
    cfg["aux_loss_coefs"]["group"] = 0.5
    cfg["group_loss_start_step"] = 10
    _, lm, loss9, info = ref.forward(p, cfg, x, y, step=9)
    _, _, loss10, _ = ref.forward(p, cfg, x, y, step=10)
    assert loss9.item() == lm.item()
    g = sum(it["losses"]["group"].item() for it in info)
    assert abs(loss10.item() - lm.item() - 0.5 * g) < 1e-12 and g > 0


@test
def f_safetensors_round_trip():
    t = {"f64": np.random.rand(2, 3), "f32": np.random.rand(5).astype(np.float32),
         "i32": np.arange(6, dtype=np.int32).reshape(3, 2), "i64": np.array([-1, 2 ** 40]),
         "empty": np.zeros((0, 4), np.float32), "scalar": np.array(3.5)}
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "t.safetensors")
        write_safetensors(path, t, {"a": "b"})
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
        assert n % 8 == 0
        back, meta = read_safetensors(path)
        assert meta == {"a": "b"} and set(back) == set(t)
        for k in t:
            assert back[k].dtype == t[k].dtype and np.array_equal(back[k], t[k]), k


@test
def g_cli_end_to_end():
    """make_test_checkpoint -> torch_ref (fp64, fp32) -> compare_tensors, for every kind."""
    out = []
    with tempfile.TemporaryDirectory() as d:
        for kind, extra in [("dense", ["--tie"]), ("moe", []), ("hmoe", []), ("mohge", [])]:
            ck = os.path.join(d, kind)
            run = lambda *a: subprocess.run([PY, *a], capture_output=True, text=True)  # noqa
            r = run(os.path.join(TOOLS, "make_test_checkpoint.py"), "--out", ck, "--kind", kind,
                    *extra)
            assert r.returncode == 0, r.stderr
            res = {}
            for dt in ("float64", "float32"):
                res[dt] = os.path.join(d, f"{kind}_{dt}.safetensors")
                r = run(os.path.join(TOOLS, "torch_ref.py"), "--checkpoint", ck, "--tokens-file",
                        os.path.join(ck, "tokens.safetensors"), "--out", res[dt], "--dtype", dt)
                assert r.returncode == 0, r.stderr
            t64, meta = read_safetensors(res["float64"])
            w, _ = read_safetensors(os.path.join(ck, "model.safetensors"))
            assert set(t64) == {"logits", "loss", "lm_loss"} | {"grad." + k for k in w}, kind
            assert t64["logits"].shape == (2, 12, 64) and t64["loss"].shape == (1,)
            assert all(t64["grad." + k].shape == w[k].shape for k in w)
            assert all(np.abs(t64["grad." + k]).max() > 0 for k in w), "a gradient is all zero"
            cmp = os.path.join(TOOLS, "compare_tensors.py")
            r = run(cmp, res["float32"], res["float64"], "--rtol", "1e-4")
            assert r.returncode == 0, r.stdout
            out.append(f"{kind} fp32 vs fp64 {r.stdout.strip().splitlines()[-1].split(';')[1]}")
            r = run(cmp, res["float32"], res["float64"], "--rtol", "1e-12", "--quiet")
            assert r.returncode == 1 and "FAIL" in r.stdout
        # name-set mismatch is an error unless ignored
        a = os.path.join(d, "a.safetensors")
        write_safetensors(a, {"x": np.ones(2), "y": np.ones(2)})
        b = os.path.join(d, "b.safetensors")
        write_safetensors(b, {"x": np.ones(2, np.float32)})
        assert run(cmp, a, b).returncode == 1
        assert run(cmp, a, b, "--ignore", "y").returncode == 0
    return "; ".join(out)


def main():
    verbose = "-v" in sys.argv
    sel = sys.argv[sys.argv.index("-k") + 1] if "-k" in sys.argv else ""
    torch.manual_seed(0)
    passed = failed = 0
    for fn in TESTS:
        if sel not in fn.__name__:
            continue
        try:
            note = fn()
            passed += 1
            print(f"PASS {fn.__name__}" + (f"  ({note})" if note else ""))
        except Exception as e:  # noqa: BLE001 - report every failure, keep going
            failed += 1
            print(f"FAIL {fn.__name__}: {type(e).__name__}: {e}")
            if verbose:
                traceback.print_exc()
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
