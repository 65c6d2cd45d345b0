// defines: the op test table — every op of every backend (kernels/backend.h) judged against the
// float64 reference of kernels/reference.h, ggml test-backend-ops style.
// One table (all_cases) lists op cases with their shapes; one driver (OpTest) runs each case on
// every backend the engine knows (a backend not compiled in, or without a device, is a visible
// skip). Inputs are uploaded to the backend, outputs downloaded, so a case never touches backend
// memory from the host:
//   forward   fast outputs vs the reference forward, max error per tensor relative to max |ref|;
//   backward  fast gradients vs central finite differences of L = Σ g ⊙ ref_forward(inputs) in
//             float64, on up to kFdSamples sampled coordinates per input tensor;
//   accumulate  backward called twice on pre-filled gradients gives pre-fill + 2 · gradient;
//   extra     the op's own properties (causality, RoPE adjoint, in-place cross-entropy, ...).
// Each case prints one line with the max error per tensor (the llm.c habit).
// Every backend is held to the same tolerances (below): fp32 ops 1e-5 forward and 1e-4 backward
// relative error; bf16 matmuls 1e-2, and then to 1e-5 against float64 products of the
// bf16-rounded inputs (their exact contract, gemm.h).
#include <gtest/gtest.h>
#include <fmt/format.h>
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <tuple>
#include <cmath>
#include <functional>
#include <limits>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "core/error.h"
#include "kernels/backend.h"
#include "kernels/gemm.h"
#include "kernels/matvec.h"
#include "kernels/ops.h"
#include "kernels/parallel.h"
#include "kernels/vec_math.h"
#include "kernels/reference.h"
#include "kernels/rope_table.h"

namespace {

using mohge::ref::Vec;
using F = std::vector<float>;
using Ints = std::vector<int32_t>;

constexpr double kFwdTol = 1e-5;    // max |fast − ref| / max |ref|, per output tensor
constexpr double kBwdTol = 1e-4;    // max |fast − fd| / max |fd|, per input tensor
constexpr double kAccTol = 1e-5;    // accumulation, relative to max(|pre-fill|, |grad|)
constexpr size_t kFdSamples = 64;   // finite-difference coordinates per input tensor
constexpr float kTheta = 10000.0f;  // RoPE base (SPEC §1)
constexpr float kEps = 1e-6f;       // RMSNorm eps (SPEC §1)

// ---------------------------------------------------------------------------------------------
// helpers

Vec to_double(const F& x) { return Vec(x.begin(), x.end()); }

double max_abs(const Vec& x) {
  double m = 0.0;
  for (double v : x) m = std::isfinite(v) ? std::max(m, std::fabs(v)) : INFINITY;
  return m;
}
double max_abs(const F& x) { return max_abs(to_double(x)); }

// max |a − b| / max(max |b|, max |a|, floor); infinite if anything is non-finite or sizes differ.
double rel_err(const Vec& a, const Vec& b, double floor = 1e-30) {
  if (a.size() != b.size()) return INFINITY;
  double diff = 0.0;
  for (size_t i = 0; i < a.size(); i++) {
    double d = std::fabs(a[i] - b[i]);
    if (!std::isfinite(d)) return INFINITY;
    diff = std::max(diff, d);
  }
  return diff / std::max({max_abs(a), max_abs(b), floor});
}
double rel_err(const F& a, const Vec& b) { return rel_err(to_double(a), b); }
double rel_err(const F& a, const F& b) { return rel_err(to_double(a), to_double(b)); }

double dot(const F& a, const F& b) {
  double s = 0.0;
  for (size_t i = 0; i < a.size(); i++) s += (double)a[i] * b[i];
  return s;
}

struct Rng {
  std::mt19937_64 gen;
  explicit Rng(uint64_t seed) : gen(seed) {}
  F uniform(size_t n, float lo = -1.0f, float hi = 1.0f) {
    std::uniform_real_distribution<float> d(lo, hi);
    F x(n);
    for (auto& v : x) v = d(gen);
    return x;
  }
  Ints ints(size_t n, int lo, int hi) {  // uniform in [lo, hi]
    std::uniform_int_distribution<int> d(lo, hi);
    Ints x(n);
    for (auto& v : x) v = d(gen);
    return x;
  }
  // k distinct coordinates of [0, n) (all when n ≤ k), stratified: one uniform draw from each of
  // k equal slices, so every region of the tensor (every row block) is probed; the first and
  // last coordinates are always included.
  std::vector<size_t> sample(size_t n, size_t k) {
    std::vector<size_t> idx;
    if (n <= k) {
      for (size_t i = 0; i < n; i++) idx.push_back(i);
      return idx;
    }
    for (size_t j = 0; j < k; j++) {
      size_t lo = j * n / k, hi = (j + 1) * n / k;  // hi > lo since n > k
      idx.push_back(lo + std::uniform_int_distribution<size_t>(0, hi - lo - 1)(gen));
    }
    idx.front() = 0;
    idx.back() = n - 1;
    return idx;
  }
};

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

struct Tensor {
  std::string name;
  F data;
};

using mohge::Backend;
using mohge::Buffer;

// x copied to a new allocation on be, and back.
template <class T>
Buffer<T> dev(Backend& be, const std::vector<T>& x) {
  Buffer<T> b(be, x.size());
  if (!x.empty()) b.upload(x.data(), x.size());
  return b;
}
template <class T>
std::vector<T> host(const Buffer<T>& b) {
  return b.to_host();
}

// ---------------------------------------------------------------------------------------------
// the case interface: one row of the table

struct OpCase {
  virtual ~OpCase() = default;
  virtual std::string op() const = 0;
  virtual std::string shape() const = 0;
  // Fill `inputs` (the float tensors backward differentiates) and any integer inputs.
  virtual void init(Rng& rng) = 0;
  // Fast forward on `inputs`. The first n_grad_outputs() outputs receive an upstream gradient;
  // later ones are tensors saved for backward (rstd, att), checked against the reference too.
  virtual std::vector<Tensor> forward() = 0;
  // Reference forward on the given inputs (same order as `inputs`), outputs as forward(); with
  // aux = false only the first n_grad_outputs() are needed (finite differences).
  virtual std::vector<Vec> ref_forward(const std::vector<Vec>& in, bool aux = true) const = 0;
  virtual int n_grad_outputs() const { return 1; }
  virtual double fwd_tol() const { return kFwdTol; }
  virtual double bwd_tol() const { return kBwdTol; }
  virtual bool has_backward() const { return true; }
  // Whether the op's backward accumulates (+=) by its ops.h contract; others are wrapped here.
  virtual bool accumulates() const { return true; }
  // Whether the gradient of inputs[i] is identically zero for this case (then it must be zero).
  virtual bool zero_grad(size_t /*i*/) const { return false; }
  // Coordinates of inputs[i] the finite-difference check must include besides the sample.
  virtual std::vector<size_t> key_coords(size_t /*i*/) const { return {}; }
  virtual F upstream(int /*out*/, size_t n, Rng& rng) const { return rng.uniform(n); }
  // Fast backward for upstream gradients dout; grads[i] (sized like inputs[i]) is accumulated.
  virtual void backward(const std::vector<Tensor>& outs, const std::vector<F>& dout,
                        std::vector<F>& grads) {}
  // Op-specific properties: append "name err" items to `summary`, EXPECT inside.
  virtual void extra(Rng& rng, std::string& summary) {}
  // Non-empty when this machine cannot run the case (printed as the skip reason).
  virtual std::string unsupported() const { return ""; }

  std::vector<Tensor> inputs;
  const F& in(size_t i) const { return inputs[i].data; }
  Backend* be = nullptr;  // the backend under test, set by the driver before init()
  template <class T>
  Buffer<T> up(const std::vector<T>& x) const { return dev(*be, x); }
  Buffer<float> up_in(size_t i) const { return up(in(i)); }
};

// ---------------------------------------------------------------------------------------------
// matmul: out[N,O] = inp[N,I] · w[O,I]ᵀ

// Rounds every element to bfloat16 (what a bf16 matmul does to its inputs).
Vec round_bf16(const Vec& x) {
  Vec r(x.size());
  for (size_t i = 0; i < x.size(); i++) r[i] = mohge::bf16_to_float(mohge::bf16_from_float((float)x[i]));
  return r;
}
Vec transpose(const Vec& x, int rows, int cols) {
  Vec t(x.size());
  for (int r = 0; r < rows; r++)
    for (int c = 0; c < cols; c++) t[(size_t)c * rows + r] = x[(size_t)r * cols + c];
  return t;
}

// With p = bf16 the table's tolerances only say "about right" (bf16 keeps 8 bits); extra()
// then checks the exact contract: fp32 sums of bf16-rounded inputs, to fp32 accuracy.
// frozen: w is declared inference weights (Backend::set_inference_weights, a bf16 copy under
// p = bf16), so on the CPU a few rows go through decode's matrix–vector kernel (kernels/matvec.h);
// extra() then also checks that each row's result is the same bits computed alone.
struct MatmulCase : OpCase {
  int N, I, O;
  mohge::Precision p;
  bool frozen;
  MatmulCase(int N, int I, int O, mohge::Precision p = mohge::Precision::fp32, bool frozen = false)
      : N(N), I(I), O(O), p(p), frozen(frozen) {}
  bool bf16() const { return p == mohge::Precision::bf16; }
  std::string op() const override {
    return std::string(bf16() ? "matmul_bf16" : "matmul") + (frozen ? "_frozen" : "");
  }
  std::string shape() const override { return fmt::format("N={} I={} O={}", N, I, O); }
  std::string unsupported() const override {
    const bool cpu = std::string(be->name()) == "cpu";
    if (bf16() && cpu && !mohge::bf16_supported()) return "no AVX512-BF16 on this CPU: bf16 matmul not run";
    if (bf16() && frozen && cpu && !mohge::matvec_bf16_supported())
      return "no AVX512-BF16 in this build: bf16 weights not run";
    return "";
  }
  double fwd_tol() const override { return bf16() ? 1e-2 : kFwdTol; }
  double bwd_tol() const override { return bf16() ? 1e-2 : kBwdTol; }
  void init(Rng& rng) override {
    inputs = {{"inp", rng.uniform((size_t)N * I)}, {"w", rng.uniform((size_t)O * I)}};
  }
  // out (pre-filled) = [out +] inp · wᵀ on the backend, for the first n rows of inp from row r0
  F fwd(const F& pre, bool accumulate, int r0 = 0, int n = -1, bool freeze = true) const {
    n = n < 0 ? N : n;
    freeze = freeze && frozen;
    auto x = up(F(in(0).begin() + (size_t)r0 * I, in(0).begin() + (size_t)(r0 + n) * I));
    auto w = up_in(1), out = up(pre);
    if (freeze) be->set_inference_weights({{w.data(), w.size()}}, bf16());
    be->matmul_forward(out.data(), x.data(), w.data(), n, I, O, accumulate, p);
    if (freeze) be->clear_inference_weights(w.data());
    return host(out);
  }
  // matmul_backward into pre-filled gradients; a null output when its flag is off
  void bwd(F* dinp, F* dw, const F& dout) const {
    auto x = up_in(0), w = up_in(1), g = up(dout);
    Buffer<float> di = dinp ? up(*dinp) : Buffer<float>(), dww = dw ? up(*dw) : Buffer<float>();
    be->matmul_backward(dinp ? di.data() : nullptr, dw ? dww.data() : nullptr, g.data(), x.data(),
                        w.data(), N, I, O, p);
    if (dinp) *dinp = host(di);
    if (dw) *dw = host(dww);
  }
  std::vector<Tensor> forward() override {
    return {{"out", fwd(F((size_t)N * O, NAN), false)}};  // NaN: accumulate=false must overwrite
  }
  std::vector<Vec> ref_forward(const std::vector<Vec>& x, bool aux) const override {
    return {mohge::ref::matmul(x[0], x[1], N, I, O)};
  }
  void backward(const std::vector<Tensor>&, const std::vector<F>& dout,
                std::vector<F>& g) override {
    bwd(&g[0], &g[1], dout[0]);
  }
  // the inputs as the matmul sees them: rounded to bf16 under p = bf16
  Vec seen(const F& x) const { return bf16() ? round_bf16(to_double(x)) : to_double(x); }
  void extra(Rng& rng, std::string& summary) override {
    // forward with accumulate=true adds into a pre-filled out
    F pre = rng.uniform((size_t)N * O), out = fwd(pre, /*accumulate=*/true);
    Vec want = mohge::ref::add(to_double(pre), mohge::ref::matmul(seen(in(0)), seen(in(1)), N, I, O));
    double e_acc = rel_err(out, want);
    EXPECT_LE(e_acc, kFwdTol) << "matmul_forward(accumulate=true)";
    // backward with one of the outputs null computes the other alone
    F dout = rng.uniform((size_t)N * O);
    F dinp((size_t)N * I, 0.f), dw((size_t)O * I, 0.f), dinp1 = dinp, dw1 = dw;
    bwd(&dinp, &dw, dout);
    bwd(&dinp1, nullptr, dout);
    bwd(nullptr, &dw1, dout);
    double e_null = std::max(rel_err(dinp1, dinp), rel_err(dw1, dw));
    EXPECT_LE(e_null, 1e-6) << "matmul_backward with a null output";
    // gradients against the float64 products of exactly the inputs the matmul sees
    const Vec g = seen(dout), x = seen(in(0)), w = seen(in(1));
    double e_dinp = rel_err(dinp, mohge::ref::matmul(g, transpose(w, O, I), N, O, I));
    double e_dw = rel_err(dw, mohge::ref::matmul(transpose(g, N, O), transpose(x, N, I), O, N, I));
    EXPECT_LE(e_dinp, kFwdTol) << "matmul_backward dinp";
    EXPECT_LE(e_dw, kFwdTol) << "matmul_backward dw";
    summary += fmt::format(" | fwd-accumulate {:.1e} null-grad {:.1e} dinp {:.1e} dw {:.1e}", e_acc,
                           e_null, e_dinp, e_dw);
    const bool cpu = std::string(be->name()) == "cpu";
    if (frozen && bf16() && (N > mohge::kMatvecMaxRows || !mohge::matvec_supported())) {
      // the GEMM on the backend's bf16 copy of the weights: the same bits as rounding them per call
      const F held = fwd(F((size_t)N * O, NAN), false), rounded = fwd(F((size_t)N * O, NAN), false, 0, -1, false);
      EXPECT_EQ(std::memcmp(held.data(), rounded.data(), held.size() * sizeof(float)), 0)
          << "frozen bf16 weights give other bits than the bf16 GEMM";
    }
    // matmul_forward_shared: w's rows as up to 3 products of one input (q, k, v), each the same
    // bits as its own matmul_forward
    {
      const int O1 = O / 3, O2 = O1 + (O - O1) / 2;
      const std::vector<std::pair<int, int>> parts = {{0, O1}, {O1, O2}, {O2, O}};
      auto x = up_in(0), w = up_in(1);
      if (frozen) be->set_inference_weights({{w.data(), w.size()}}, bf16());
      std::vector<Buffer<float>> shared, alone;
      std::vector<mohge::SharedInputProduct> prods;
      for (auto [a, b] : parts) {
        shared.push_back(up(F((size_t)N * (b - a), NAN)));
        alone.push_back(up(F((size_t)N * (b - a), NAN)));
        prods.push_back({shared.back().data(), w.data() + (size_t)a * I, b - a});
        be->matmul_forward(alone.back().data(), x.data(), w.data() + (size_t)a * I, N, I, b - a, false, p);
      }
      be->matmul_forward_shared(x.data(), prods.data(), (int)prods.size(), N, I, p);
      if (frozen) be->clear_inference_weights(w.data());
      int differ = 0;
      for (size_t j = 0; j < parts.size(); j++) {
        const F s1 = host(shared[j]), s2 = host(alone[j]);
        differ += std::memcmp(s1.data(), s2.data(), s1.size() * sizeof(float)) != 0;
      }
      EXPECT_EQ(differ, 0) << "products of matmul_forward_shared that differ from matmul_forward";
      summary += fmt::format(" shared-differ {}", differ);
    }
    if (!frozen || !cpu || N > mohge::kMatvecMaxRows || !mohge::matvec_supported()) return;
    // decode's kernel: a row's output does not depend on the rows beside it
    const F all = fwd(F((size_t)N * O, NAN), false);
    int differ = 0;
    for (int r = 0; r < N; r++) {
      const F one = fwd(F((size_t)O, NAN), false, r, 1);
      differ += std::memcmp(one.data(), all.data() + (size_t)r * O, O * sizeof(float)) != 0;
    }
    EXPECT_EQ(differ, 0) << "rows whose output differs when computed alone";
    summary += fmt::format(" rows-alone-differ {}", differ);
  }
};

// ---------------------------------------------------------------------------------------------
// embedding: out[N,C] = wte[tokens[n]]

struct EmbeddingCase : OpCase {
  int N, V, C;
  Ints tokens;
  EmbeddingCase(int N, int V, int C) : N(N), V(V), C(C) {}
  std::string op() const override { return "embedding"; }
  std::string shape() const override { return fmt::format("N={} V={} C={}", N, V, C); }
  void init(Rng& rng) override {
    inputs = {{"wte", rng.uniform((size_t)V * C)}};
    tokens = rng.ints(N, 0, V - 1);
    tokens[0] = V - 1;  // the last row of the table
    if (N >= 3) tokens[N - 1] = tokens[N / 2] = tokens[1];  // a token repeated ≥ 3 times
  }
  std::vector<Tensor> forward() override {
    auto out = up(F((size_t)N * C, NAN)), wte = up_in(0);
    auto tok = up(tokens);
    be->embedding_forward(out.data(), tok.data(), wte.data(), N, C);
    return {{"out", host(out)}};
  }
  void bwd(F& dwte, const F& dout) const {
    auto d = up(dwte), g = up(dout);
    auto tok = up(tokens);
    be->embedding_backward(d.data(), g.data(), tok.data(), N, C);
    dwte = host(d);
  }
  std::vector<Vec> ref_forward(const std::vector<Vec>& x, bool aux) const override {
    return {mohge::ref::embedding(tokens, x[0], N, C)};
  }
  void backward(const std::vector<Tensor>&, const std::vector<F>& dout,
                std::vector<F>& g) override {
    bwd(g[0], dout[0]);
  }
  void extra(Rng& rng, std::string& summary) override {
    // every row of dwte is the sum of dout over the positions holding that token (repeats
    // included); rows of tokens that never occur stay exactly at zero
    F dout = rng.uniform((size_t)N * C), dwte((size_t)V * C, 0.f);
    bwd(dwte, dout);
    Vec want((size_t)V * C, 0.0);
    int max_rep = 0;
    for (int v = 0; v < V; v++) {
      int rep = 0;
      for (int n = 0; n < N; n++)
        if (tokens[n] == v) {
          rep++;
          for (int c = 0; c < C; c++) want[(size_t)v * C + c] += dout[(size_t)n * C + c];
        }
      max_rep = std::max(max_rep, rep);
    }
    double e = rel_err(dwte, want);
    EXPECT_LE(e, 1e-6) << "embedding_backward scatter-add with repeated tokens";
    if (N >= 3) {
      EXPECT_GE(max_rep, 3) << "the case should repeat a token";
    }
    summary += fmt::format(" | scatter (max repeat {}) {:.1e}", max_rep, e);
  }
};

// ---------------------------------------------------------------------------------------------
// rmsnorm: out = inp · rstd · w

struct RMSNormCase : OpCase {
  int N, C;
  float scale;  // input magnitude; small values make eps matter
  RMSNormCase(int N, int C, float scale = 1.0f) : N(N), C(C), scale(scale) {}
  std::string op() const override { return "rmsnorm"; }
  std::string shape() const override {
    return fmt::format("N={} C={}{}", N, C, scale != 1.0f ? fmt::format(" |x|~{:g}", scale) : "");
  }
  void init(Rng& rng) override {
    inputs = {{"inp", rng.uniform((size_t)N * C, -scale, scale)}, {"w", rng.uniform(C, 0.5f, 1.5f)}};
  }
  std::vector<Tensor> forward() override {
    auto out = up(F((size_t)N * C, NAN)), rstd = up(F(N, NAN)), x = up_in(0), w = up_in(1);
    be->rmsnorm_forward(out.data(), rstd.data(), x.data(), w.data(), N, C, kEps);
    return {{"out", host(out)}, {"rstd", host(rstd)}};
  }
  std::vector<Vec> ref_forward(const std::vector<Vec>& x, bool aux) const override {
    Vec rstd;
    Vec out = mohge::ref::rmsnorm(x[0], x[1], N, C, kEps, aux ? &rstd : nullptr);
    return {out, rstd};
  }
  void backward(const std::vector<Tensor>& outs, const std::vector<F>& dout,
                std::vector<F>& g) override {
    auto dx = up(g[0]), dw = up(g[1]), d = up(dout[0]), x = up_in(0), w = up_in(1);
    auto rstd = up(outs[1].data);
    be->rmsnorm_backward(dx.data(), dw.data(), d.data(), x.data(), w.data(), rstd.data(), N, C);
    g[0] = host(dx), g[1] = host(dw);
  }
};

// ---------------------------------------------------------------------------------------------
// rope: in place on x[B,T,H,hd]; backward is the inverse rotation of the gradient

struct RopeCase : OpCase {
  int B, T, H, hd, pos0;
  RopeCase(int B, int T, int H, int hd, int pos0) : B(B), T(T), H(H), hd(hd), pos0(pos0) {}
  std::string op() const override { return "rope"; }
  std::string shape() const override {
    return fmt::format("B={} T={} H={} hd={} pos0={}", B, T, H, hd, pos0);
  }
  size_t n() const { return (size_t)B * T * H * hd; }
  // ops_cpu rounds each frequency θ^(−2i/hd) to float (as HF does), so the angle at position p is
  // off by up to p·2^−24: the error bound grows with the position.
  double pos_tol() const { return std::ldexp((double)(pos0 + T), -24); }
  double fwd_tol() const override { return std::max(kFwdTol, pos_tol()); }
  double bwd_tol() const override { return std::max(kBwdTol, pos_tol()); }
  void init(Rng& rng) override { inputs = {{"x", rng.uniform(n())}}; }
  F apply(const F& x, bool inverse) const {
    auto d = up(x);
    be->rope_apply(d.data(), B, T, H, hd, kTheta, pos0, inverse);
    return host(d);
  }
  std::vector<Tensor> forward() override { return {{"out", apply(in(0), false)}}; }
  std::vector<Vec> ref_forward(const std::vector<Vec>& x, bool aux) const override {
    return {mohge::ref::rope(x[0], B, T, H, hd, kTheta, pos0, false)};
  }
  bool accumulates() const override { return false; }  // in place by contract
  void backward(const std::vector<Tensor>&, const std::vector<F>& dout,
                std::vector<F>& g) override {
    F d = apply(dout[0], /*inverse=*/true);
    for (size_t i = 0; i < d.size(); i++) g[0][i] += d[i];
  }
  void extra(Rng& rng, std::string& summary) override {
    const F& x = in(0);
    F y = rng.uniform(n());
    // the inverse direction against the reference
    double e_inv = rel_err(apply(x, true), mohge::ref::rope(to_double(x), B, T, H, hd, kTheta,
                                                            pos0, true));
    EXPECT_LE(e_inv, fwd_tol()) << "rope_apply(inverse=true) vs reference";
    // inverse(apply(x)) == x
    double e_rt = rel_err(apply(apply(x, false), true), x);
    EXPECT_LE(e_rt, 1e-6) << "rope inverse(apply(x)) != x";
    // the inverse is the adjoint: <R x, y> == <x, Rᵀ y>
    double lhs = dot(apply(x, false), y), rhs = dot(x, apply(y, true));
    double e_adj = std::fabs(lhs - rhs) / std::sqrt(dot(x, x) * dot(y, y));
    EXPECT_LE(e_adj, 1e-6) << "rope inverse is not the adjoint: " << lhs << " vs " << rhs;
    summary += fmt::format(" | inverse {:.1e} roundtrip {:.1e} adjoint {:.1e}", e_inv, e_rt, e_adj);
  }
};

// ---------------------------------------------------------------------------------------------
// attention: causal MHA / GQA

// p = bf16 may round q, k, v, P, dout and dS to bfloat16 (the CUDA tensor-core kernels; the CPU
// stays fp32): 2e-2 forward and backward, where a float64 emulation of that rounding at these
// shapes errs by at most 6.5e-3.
struct AttentionCase : OpCase {
  int B, T, H, KVH, hd;
  mohge::Precision p;
  AttentionCase(int B, int T, int H, int KVH, int hd, mohge::Precision p = mohge::Precision::fp32)
      : B(B), T(T), H(H), KVH(KVH), hd(hd), p(p) {}
  std::string op() const override { return p == mohge::Precision::bf16 ? "attention_bf16" : "attention"; }
  std::string shape() const override {
    return fmt::format("B={} T={} H={} KVH={} hd={}", B, T, H, KVH, hd);
  }
  double fwd_tol() const override { return p == mohge::Precision::bf16 ? 2e-2 : kFwdTol; }
  double bwd_tol() const override { return p == mohge::Precision::bf16 ? 2e-2 : kBwdTol; }
  void init(Rng& rng) override {
    // |q|, |k| up to 2 gives peaked but not one-hot softmax rows
    inputs = {{"q", rng.uniform((size_t)B * T * H * hd, -2.f, 2.f)},
              {"k", rng.uniform((size_t)B * T * KVH * hd, -2.f, 2.f)},
              {"v", rng.uniform((size_t)B * T * KVH * hd)}};
  }
  std::vector<Tensor> run(const F& q, const F& k, const F& v) const {
    auto out = up(F((size_t)B * T * H * hd, NAN)), lse = up(F((size_t)B * H * T, NAN));
    auto qb = up(q), kb = up(k), vb = up(v);
    be->attention_forward(out.data(), lse.data(), qb.data(), kb.data(), vb.data(), B, T, H, KVH, hd, p);
    return {{"out", host(out)}, {"lse", host(lse)}};
  }
  std::vector<Tensor> forward() override { return run(in(0), in(1), in(2)); }
  std::vector<Vec> ref_forward(const std::vector<Vec>& x, bool aux) const override {
    Vec lse;
    Vec out = mohge::ref::attention(x[0], x[1], x[2], B, T, H, KVH, hd, aux ? &lse : nullptr);
    return {out, lse};
  }
  // with one key the softmax is constant 1: out = v, nothing flows to q or k
  bool zero_grad(size_t i) const override { return T == 1 && i < 2; }
  void backward(const std::vector<Tensor>& outs, const std::vector<F>& dout,
                std::vector<F>& g) override {
    auto dq = up(g[0]), dk = up(g[1]), dv = up(g[2]), d = up(dout[0]);
    auto out = up(outs[0].data), lse = up(outs[1].data);
    auto q = up_in(0), k = up_in(1), v = up_in(2);
    be->attention_backward(dq.data(), dk.data(), dv.data(), d.data(), out.data(), lse.data(),
                           q.data(), k.data(), v.data(), B, T, H, KVH, hd, p);
    g[0] = host(dq), g[1] = host(dk), g[2] = host(dv);
  }
  // forward and backward with `threads` OpenMP threads: out, lse, dq, dk, dv
  std::vector<F> run_on_threads(int threads, const F& dout) {
    const int saved = omp_get_max_threads();
    omp_set_num_threads(threads);
    std::vector<Tensor> outs = forward();
    std::vector<F> g;
    for (const auto& t : inputs) g.emplace_back(t.data.size(), 0.0f);
    backward(outs, {dout}, g);
    omp_set_num_threads(saved);
    return {outs[0].data, outs[1].data, g[0], g[1], g[2]};
  }
  void extra(Rng& rng, std::string& summary) override {
    // Bit-identical results on 1 and 3 threads: tiles are summed in a fixed order, never raced.
    const F dout = rng.uniform((size_t)B * T * H * hd);
    const std::vector<F> one = run_on_threads(1, dout), three = run_on_threads(3, dout);
    for (size_t i = 0; i < one.size(); i++)
      EXPECT_EQ(0, std::memcmp(one[i].data(), three[i].data(), one[i].size() * sizeof(float)))
          << "attention: result " << i << " (out, lse, dq, dk, dv) differs on 1 and 3 threads";
    summary += " | 1 vs 3 threads bit-identical";
    if (T < 2) return;
    // Perturb k and v at time t0 in every batch and kv head: rows t < t0 must not change,
    // rows t ≥ t0 must.
    const int t0 = T / 2 + 1 < T ? T / 2 + 1 : T - 1;
    F k = in(1), v = in(2);
    for (int b = 0; b < B; b++)
      for (int i = 0; i < KVH * hd; i++) {
        size_t at = ((size_t)b * T + t0) * KVH * hd + i;
        k[at] += 1.5f;
        v[at] -= 1.0f;
      }
    auto base = run(in(0), in(1), in(2)), pert = run(in(0), k, v);
    double past = 0.0, future = 0.0;
    for (int b = 0; b < B; b++)
      for (int t = 0; t < T; t++)
        for (int i = 0; i < H * hd; i++) {
          size_t at = ((size_t)b * T + t) * H * hd + i;
          double d = std::fabs((double)pert[0].data[at] - base[0].data[at]);
          (t < t0 ? past : future) = std::max(t < t0 ? past : future, d);
        }
    EXPECT_LE(past, 1e-6) << "attention: a row t < " << t0 << " sees key " << t0;
    EXPECT_GE(future, 1e-3) << "attention: perturbing key " << t0 << " changed nothing";
    summary += fmt::format(" | causal: rows<{} moved {:.1e}, rows>={} moved {:.1e}", t0, past,
                           t0, future);
  }
};

// ---------------------------------------------------------------------------------------------
// attention_decode: query rows (sequence, position) over a KV cache

struct AttentionDecodeCase : OpCase {
  int S, max_len, H, KVH, hd;
  Ints seq, pos;
  AttentionDecodeCase(int S, int max_len, int H, int KVH, int hd, Ints seq, Ints pos)
      : S(S), max_len(max_len), H(H), KVH(KVH), hd(hd), seq(seq), pos(pos) {}
  int N() const { return (int)seq.size(); }
  std::string op() const override { return "attention_decode"; }
  std::string shape() const override {
    std::string rows;  // a run of more than 4 consecutive positions as s@first-last
    for (int i = 0; i < N();) {
      int j = i + 1;
      while (j < N() && seq[j] == seq[i] && pos[j] == pos[j - 1] + 1) j++;
      if (j - i <= 4) j = i + 1;  // short runs row by row
      rows += j - i > 1 ? fmt::format(" {}@{}-{}", seq[i], pos[i], pos[j - 1]) : fmt::format(" {}@{}", seq[i], pos[i]);
      i = j;
    }
    return fmt::format("S={} L={} H={} KVH={} hd={} rows{}", S, max_len, H, KVH, hd, rows);
  }
  bool has_backward() const override { return false; }
  void init(Rng& rng) override {
    const size_t kv = (size_t)KVH * hd;
    F k = rng.uniform((size_t)S * max_len * kv, -2.f, 2.f), v = rng.uniform(k.size());
    // cache positions no row may read (beyond each sequence's last queried position) hold NaN:
    // reading one would poison the output
    for (int s = 0; s < S; s++) {
      int last = -1;
      for (int i = 0; i < N(); i++)
        if (seq[i] == s) last = std::max(last, pos[i]);
      for (size_t at = ((size_t)s * max_len + last + 1) * kv; at < (size_t)(s + 1) * max_len * kv; at++)
        k[at] = v[at] = NAN;
    }
    inputs = {{"q", rng.uniform((size_t)N() * H * hd, -2.f, 2.f)}, {"kcache", k}, {"vcache", v}};
  }
  std::vector<Tensor> forward() override {
    auto out = up(F((size_t)N() * H * hd, NAN)), q = up_in(0), k = up_in(1), v = up_in(2);
    auto s = up(seq), p = up(pos);
    be->attention_decode(out.data(), q.data(), k.data(), v.data(), s.data(), p.data(), N(), max_len, H,
                         KVH, hd);
    return {{"out", host(out)}};
  }
  std::vector<Vec> ref_forward(const std::vector<Vec>& x, bool) const override {
    return {mohge::ref::attention_decode(x[0], x[1], x[2], seq, pos, N(), max_len, H, KVH, hd)};
  }
};

// ---------------------------------------------------------------------------------------------
// swiglu: out = silu(gate) · up

struct SwiGLUCase : OpCase {
  int64_t N;
  float range;
  SwiGLUCase(int64_t N, float range) : N(N), range(range) {}
  std::string op() const override { return "swiglu"; }
  std::string shape() const override { return fmt::format("N={} |gate|<={:g}", N, range); }
  void init(Rng& rng) override {
    inputs = {{"gate", rng.uniform(N, -range, range)}, {"up", rng.uniform(N, -2.f, 2.f)}};
    if (N >= 4) {  // saturated gates: exp(-g) overflows float for g < -88.7
      inputs[0].data[0] = -100.f;
      inputs[0].data[1] = 100.f;
      inputs[0].data[2] = 0.f;
    }
  }
  std::vector<Tensor> forward() override {
    auto out = up(F(N, NAN)), gate = up_in(0), u = up_in(1);
    be->swiglu_forward(out.data(), gate.data(), u.data(), N);
    return {{"out", host(out)}};
  }
  std::vector<Vec> ref_forward(const std::vector<Vec>& x, bool aux) const override {
    return {mohge::ref::swiglu(x[0], x[1])};
  }
  void backward(const std::vector<Tensor>&, const std::vector<F>& dout,
                std::vector<F>& g) override {
    auto dg = up(g[0]), du = up(g[1]), d = up(dout[0]), gate = up_in(0), u = up_in(1);
    be->swiglu_backward(dg.data(), du.data(), d.data(), gate.data(), u.data(), N);
    g[0] = host(dg), g[1] = host(du);
  }
};

// ---------------------------------------------------------------------------------------------
// cross-entropy: losses[N] and dlogits = (softmax − onehot) · dscale, i.e. ∂(dscale · Σ losses)

struct CrossEntropyCase : OpCase {
  int N, V;
  float scale, dscale;  // logits magnitude; upstream gradient of every loss
  Ints targets;
  CrossEntropyCase(int N, int V, float scale, float dscale)
      : N(N), V(V), scale(scale), dscale(dscale) {}
  std::string op() const override { return "xent"; }
  std::string shape() const override {
    return fmt::format("N={} V={} |logit|<={:g} dscale={:g}", N, V, scale, dscale);
  }
  void init(Rng& rng) override {
    inputs = {{"logits", rng.uniform((size_t)N * V, -scale, scale)}};
    targets = rng.ints(N, 0, V - 1);
    targets[0] = V - 1;
    if (N > 1) targets[1] = 0;
  }
  double total = 0.0;  // the loss sum of the last forward()
  F lse;               // saved by forward() for backward
  // losses (when with_losses), lse and loss_sum (pre-filled with `pre`) on the backend
  double fwd(F* losses, F& lse_out, double pre = 0.0) const {
    auto x = up_in(0), l = up(F(N, NAN)), ls = up(F(N, NAN));
    auto tg = up(targets);
    auto sum = up(std::vector<double>{pre});
    be->crossentropy_forward(losses ? l.data() : nullptr, ls.data(), sum.data(), x.data(), tg.data(), N, V);
    if (losses) *losses = host(l);
    lse_out = host(ls);
    return host(sum)[0];
  }
  F bwd(const F& logits, const F& lse_in, bool in_place) const {
    auto x = up(logits), ls = up(lse_in), d = up(F((size_t)N * V, NAN));
    auto tg = up(targets);
    be->crossentropy_backward(in_place ? x.data() : d.data(), x.data(), ls.data(), tg.data(), N, V, dscale);
    return host(in_place ? x : d);
  }
  std::vector<Tensor> forward() override {
    F losses;
    total = fwd(&losses, lse);
    return {{"losses", losses}};
  }
  std::vector<Vec> ref_forward(const std::vector<Vec>& x, bool aux) const override {
    return {mohge::ref::crossentropy(x[0], targets, N, V)};
  }
  bool accumulates() const override { return false; }  // dlogits is written, not accumulated
  F upstream(int, size_t n, Rng&) const override { return F(n, dscale); }
  // the target logits carry the −dscale of the one-hot term
  std::vector<size_t> key_coords(size_t) const override {
    std::vector<size_t> k;
    for (int n = 0; n < N; n++) k.push_back((size_t)n * V + targets[n]);
    return k;
  }
  void backward(const std::vector<Tensor>&, const std::vector<F>&, std::vector<F>& g) override {
    F d = bwd(in(0), lse, false);
    for (size_t i = 0; i < d.size(); i++) g[0][i] += d[i];
  }
  void extra(Rng&, std::string& summary) override {
    auto outs = forward();
    const F& losses = outs[0].data;
    Vec ref = mohge::ref::crossentropy(to_double(in(0)), targets, N, V);
    double ref_sum = std::accumulate(ref.begin(), ref.end(), 0.0);
    double sum_losses = 0.0;
    for (float l : losses) sum_losses += l;
    // the loss sum is the sum of the losses written
    double e_ret = std::fabs(total - sum_losses) / std::max(std::fabs(sum_losses), 1e-30);
    EXPECT_LE(e_ret, 1e-12) << "loss sum != Σ losses";
    double e_sum = std::fabs(total - ref_sum) / std::max(max_abs(ref) * N, 1e-30);
    EXPECT_LE(e_sum, kFwdTol) << "loss sum vs reference Σ losses";
    // losses are optional: the total alone, accumulated (+=) onto the sum's previous value
    F lse2;
    double t_only = fwd(nullptr, lse2, 100.0) - 100.0;
    EXPECT_LE(std::fabs(t_only - total), 1e-12 * std::max(std::fabs(total), 100.0));
    // lse is the log-sum-exp of each row
    double e_lse = 0.0;
    for (int n = 0; n < N; n++) {
      double mx = -INFINITY, s = 0.0;
      for (int j = 0; j < V; j++) mx = std::max(mx, (double)in(0)[(size_t)n * V + j]);
      for (int j = 0; j < V; j++) s += std::exp(in(0)[(size_t)n * V + j] - mx);
      e_lse = std::max(e_lse, std::fabs(lse2[n] - (mx + std::log(s))) / std::max(1.0, std::fabs(mx)));
    }
    EXPECT_LE(e_lse, 1e-6) << "lse is not the row log-sum-exp";
    // in place: dlogits aliases logits, same result as out of place
    F d = bwd(in(0), lse2, false), buf = bwd(in(0), lse2, true);
    double e_inplace = rel_err(buf, d);
    EXPECT_LE(e_inplace, 1e-6) << "in-place dlogits differs from out-of-place";
    summary += fmt::format(" | total {:.1e} (sum=Σ {:.0e}) in-place {:.1e}", e_sum, e_ret,
                           e_inplace);
  }
};

// ---------------------------------------------------------------------------------------------
// add_inplace: y += x (no backward: the gradient passes through unchanged)

struct AddCase : OpCase {
  int64_t N;
  explicit AddCase(int64_t N) : N(N) {}
  std::string op() const override { return "add"; }
  std::string shape() const override { return fmt::format("N={}", N); }
  void init(Rng& rng) override { inputs = {{"y", rng.uniform(N)}, {"x", rng.uniform(N)}}; }
  std::vector<Tensor> forward() override {
    auto y = up_in(0), x = up_in(1);
    be->add_inplace(y.data(), x.data(), N);
    return {{"out", host(y)}};
  }
  std::vector<Vec> ref_forward(const std::vector<Vec>& x, bool aux) const override {
    return {mohge::ref::add(x[0], x[1])};
  }
  bool has_backward() const override { return false; }
};


// ---------------------------------------------------------------------------------------------
// MoE dispatch: gather_rows (permute tokens into expert order) and combine_rows (unpermute with
// the gate weights); each with its backward. A routing of N tokens to k experts each: A = N·k
// assignments, assignment j of token t sits at packed row pos[j] (a permutation of [0, A)).

struct Dispatch {
  Ints src, offsets, pos;  // src[pos[j]] = token of assignment j; offsets: CSR by token
  Dispatch(Rng& rng, int N, int k) {
    const int A = N * k;
    pos = rng.ints(A, 0, 0);
    std::iota(pos.begin(), pos.end(), 0);
    std::shuffle(pos.begin(), pos.end(), rng.gen);
    src.assign(A, 0), offsets.assign(N + 1, 0);
    for (int t = 0; t < N; t++) {
      offsets[t + 1] = offsets[t] + k;
      for (int j = offsets[t]; j < offsets[t + 1]; j++) src[pos[j]] = t;
    }
  }
};

struct GatherRowsCase : OpCase {
  int N, k, d;
  std::unique_ptr<Dispatch> ds;
  GatherRowsCase(int N, int k, int d) : N(N), k(k), d(d) {}
  std::string op() const override { return "gather_rows"; }
  std::string shape() const override { return fmt::format("N={} k={} d={}", N, k, d); }
  void init(Rng& rng) override {
    ds = std::make_unique<Dispatch>(rng, N, k);
    inputs = {{"inp", rng.uniform((size_t)N * d)}};
  }
  std::vector<Tensor> forward() override {
    auto out = up(F((size_t)N * k * d, NAN)), x = up_in(0);
    auto src = up(ds->src);
    be->gather_rows(out.data(), x.data(), src.data(), N * k, d);
    return {{"out", host(out)}};
  }
  std::vector<Vec> ref_forward(const std::vector<Vec>& x, bool) const override {
    return {mohge::ref::gather_rows(x[0], ds->src, d)};
  }
  void backward(const std::vector<Tensor>&, const std::vector<F>& dout, std::vector<F>& g) override {
    auto dx = up(g[0]), dy = up(dout[0]);
    auto off = up(ds->offsets), pos = up(ds->pos);
    be->gather_rows_backward(dx.data(), dy.data(), off.data(), pos.data(), N, d);
    g[0] = host(dx);
  }
};

struct CombineRowsCase : OpCase {
  int N, k, d;
  std::unique_ptr<Dispatch> ds;
  CombineRowsCase(int N, int k, int d) : N(N), k(k), d(d) {}
  std::string op() const override { return "combine_rows"; }
  std::string shape() const override { return fmt::format("N={} k={} d={}", N, k, d); }
  void init(Rng& rng) override {
    ds = std::make_unique<Dispatch>(rng, N, k);
    inputs = {{"y", rng.uniform((size_t)N * k * d)}, {"weight", rng.uniform((size_t)N * k, 0.f, 1.f)}};
  }
  std::vector<Tensor> forward() override {
    auto out = up(F((size_t)N * d, NAN)), y = up_in(0), w = up_in(1);
    auto off = up(ds->offsets), pos = up(ds->pos);
    be->combine_rows(out.data(), y.data(), w.data(), off.data(), pos.data(), N, d);
    return {{"out", host(out)}};
  }
  std::vector<Vec> ref_forward(const std::vector<Vec>& x, bool) const override {
    return {mohge::ref::combine_rows(x[0], x[1], ds->offsets, ds->pos, N, d)};
  }
  bool accumulates() const override { return false; }  // dy and dweight are written
  void backward(const std::vector<Tensor>&, const std::vector<F>& dout, std::vector<F>& g) override {
    auto dy = up(F(g[0].size(), NAN)), dw = up(F(g[1].size(), NAN)), go = up(dout[0]);
    auto y = up_in(0), w = up_in(1);
    auto off = up(ds->offsets), pos = up(ds->pos);
    be->combine_rows_backward(dy.data(), dw.data(), go.data(), y.data(), w.data(), off.data(),
                              pos.data(), N, d);
    F hy = host(dy), hw = host(dw);
    for (size_t i = 0; i < hy.size(); i++) g[0][i] += hy[i];
    for (size_t i = 0; i < hw.size(); i++) g[1][i] += hw[i];
  }
};

// ---------------------------------------------------------------------------------------------
// MoE router and auxiliary losses (kernels/router.h): router_forward + router_assign give the
// dense gate matrix [N,E] (w where kept, else 0), the full softmax, its entropy and (two_level)
// the group softmax; router_backward is judged through the gate, aux_loss_backward through the
// total loss. Selections are exact: a wrong expert moves a gate entry by O(1).

using mohge::RouterRule;
using mohge::RouterSpec;

// Logit patterns. random: uniform in [−2, 2]; ties: integers in [−2, 2] (many exact ties: the
// lower index must win); uniform: all 0 (every P = 1/E exactly, so a top-p prefix sums to p
// exactly); starved: random, but the last expert (and the last group) far below the rest, so it
// gets no token.
enum class Logits { random, ties, uniform, starved };
const char* to_string(Logits l) {
  return l == Logits::random ? "random" : l == Logits::ties ? "ties" : l == Logits::uniform ? "uniform" : "starved";
}

RouterSpec router_spec(RouterRule rule, int E, int K, double p = 1.0, int max_k = 0, int Ng = 0, int Kg = 0,
                       bool softmax_gate = true) {
  RouterSpec s;
  s.rule = rule, s.E = E, s.K = K, s.p = p, s.max_k = max_k, s.Ng = Ng, s.Kg = Kg, s.softmax_gate = softmax_gate;
  return s;
}

std::string spec_name(const RouterSpec& s) {
  if (s.rule == RouterRule::top_k) return fmt::format("E={} K={}", s.E, s.K);
  if (s.rule == RouterRule::top_p) return fmt::format("E={} p={} max_k={}", s.E, s.p, s.max_k);
  return fmt::format("Ng={} N={} Kg={} K={} {}", s.Ng, s.group_size(), s.Kg, s.K, s.softmax_gate ? "softmax" : "renorm");
}

F router_logits(Rng& rng, size_t rows, int n, Logits pat) {
  F x = rng.uniform(rows * n, -2.f, 2.f);
  for (size_t r = 0; r < rows; r++)
    for (int i = 0; i < n; i++) {
      float& v = x[r * n + i];
      if (pat == Logits::ties) v = std::round(v);
      if (pat == Logits::uniform) v = 0.f;
      if (pat == Logits::starved && i == n - 1) v = -30.f;
    }
  return x;
}

// One routing of N tokens on a backend: every tensor of RouterTensors and RouteAssignments.
struct BackendRoute {
  RouterSpec s;
  int N;
  Buffer<float> z, y, probs, entropy, sel_w, group_sig, group_probs, ingroup, combined, weight;
  Buffer<int32_t> sel, nsel, groups, offsets, expert, pos, send_token, slot;
  Buffer<double> stats;
  BackendRoute(Backend& be, const RouterSpec& s, int N, const F& zl, const F& yl, const Ints& slot_map = {})
      : s(s), N(N), z(dev(be, zl)), y(dev(be, yl)), slot(dev(be, slot_map)) {
    const size_t E = s.E, S = s.max_sel(), Ng = s.Ng, two = s.two_level();
    probs.ensure(be, N * E), entropy.ensure(be, N), sel_w.ensure(be, N * S), group_sig.ensure(be, N * Ng);
    group_probs.ensure(be, N * Ng), ingroup.ensure(be, two * N * E), combined.ensure(be, two * N * E);
    sel.ensure(be, N * S), nsel.ensure(be, N), groups.ensure(be, N * s.Kg), offsets.ensure(be, N + 1);
    expert.ensure(be, N * S), weight.ensure(be, N * S), pos.ensure(be, N * S), send_token.ensure(be, N * S);
    stats.ensure(be, mohge::route_stats_size(s.E, s.Ng));
    be.router_forward(s, tensors(), z.data(), two ? y.data() : nullptr, N);
    be.router_assign(s, assignments(), stats.data(), tensors(), slot_map.empty() ? nullptr : slot.data(), N);
  }
  mohge::RouterTensors tensors() {
    return {probs.data(),     entropy.data(),     sel.data(),     sel_w.data(),    nsel.data(),
            group_sig.data(), group_probs.data(), ingroup.data(), combined.data(), groups.data()};
  }
  mohge::RouteAssignments assignments() {
    return {offsets.data(), expert.data(), weight.data(), pos.data(), send_token.data()};
  }
  std::vector<double> host_stats() const { return stats.to_host(); }
  int A() const { return (int)host_stats()[s.E + s.Ng + 1]; }
  template <class T>
  std::vector<T> first(const Buffer<T>& b, size_t n) const {
    std::vector<T> h(n);
    if (n) b.download(h.data(), n);
    return h;
  }
  // the gate matrix [N,E]: w at kept experts, 0 elsewhere
  F gate() const {
    const Ints off = first(offsets, N + 1), ex = first(expert, A());
    const F w = first(weight, A());
    F g((size_t)N * s.E, 0.f);
    for (int t = 0; t < N; t++)
      for (int j = off[t]; j < off[t + 1]; j++) g[(size_t)t * s.E + ex[j]] = w[j];
    return g;
  }
};

Vec token_row(const Vec& x, int t, int n) { return Vec(x.begin() + (size_t)t * n, x.begin() + (size_t)(t + 1) * n); }

struct RouterCase : OpCase {
  RouterSpec s;
  int N;
  Logits pat;
  RouterCase(RouterSpec s, int N, Logits pat) : s(s), N(N), pat(pat) {}
  std::string op() const override {
    return s.rule == RouterRule::top_k ? "router_top_k" : s.rule == RouterRule::top_p ? "router_top_p" : "router_two_level";
  }
  std::string shape() const override { return fmt::format("N={} {} {}", N, spec_name(s), to_string(pat)); }
  bool two() const { return s.two_level(); }
  // a tie or a top-p prefix exactly at p flips the selection under any perturbation: no finite differences
  bool has_backward() const override { return pat == Logits::random || pat == Logits::starved; }
  bool zero_grad(size_t) const override { return s.E == 1; }  // one expert: w = 1 whatever the logit
  void init(Rng& rng) override {
    inputs = {{"logits", router_logits(rng, N, s.E, pat)}};
    if (two()) inputs.push_back({"group_logits", router_logits(rng, N, s.Ng, pat)});
  }
  const F& group_in() const {
    static const F none;
    return two() ? in(1) : none;
  }
  std::vector<Tensor> forward() override {
    BackendRoute r(*be, s, N, in(0), group_in());
    std::vector<Tensor> out = {{"gate", r.gate()}, {"probs", host(r.probs)}, {"entropy", host(r.entropy)}};
    if (two()) out.push_back({"group_probs", host(r.group_probs)});
    return out;
  }
  std::vector<Vec> ref_forward(const std::vector<Vec>& x, bool) const override {
    Vec gate((size_t)N * s.E, 0.0), probs, entropy, gprobs;
    for (int t = 0; t < N; t++) {
      const auto r = mohge::ref::route_token(s, token_row(x[0], t, s.E), two() ? token_row(x[1], t, s.Ng) : Vec());
      for (size_t j = 0; j < r.experts.size(); j++) gate[(size_t)t * s.E + r.experts[j]] = r.weights[j];
      probs.insert(probs.end(), r.probs.begin(), r.probs.end());
      entropy.push_back(r.entropy);
      gprobs.insert(gprobs.end(), r.group_probs.begin(), r.group_probs.end());
    }
    std::vector<Vec> out = {gate, probs, entropy};
    if (two()) out.push_back(gprobs);
    return out;
  }
  void backward(const std::vector<Tensor>&, const std::vector<F>& dout, std::vector<F>& g) override {
    BackendRoute r(*be, s, N, in(0), group_in());
    const int A = r.A();
    const Ints off = r.first(r.offsets, N + 1), ex = r.first(r.expert, A);
    F dw(A);
    for (int t = 0; t < N; t++)
      for (int j = off[t]; j < off[t + 1]; j++) dw[j] = dout[0][(size_t)t * s.E + ex[j]];
    auto ddw = up(dw), dz = up(g[0]);
    Buffer<float> dy = two() ? up(g[1]) : Buffer<float>();
    be->router_backward(s, dz.data(), two() ? dy.data() : nullptr, ddw.data(), r.tensors(), r.assignments(), N);
    g[0] = host(dz);
    if (two()) g[1] = host(dy);
  }
  // The assignments exactly: counts, CSR, and the send layout under a permuted slot map (a stable
  // counting sort by slot, in token order); a non-finite logit is reported, not routed.
  void extra(Rng& rng, std::string& summary) override {
    Ints slot(s.E);
    std::iota(slot.begin(), slot.end(), 0);
    std::shuffle(slot.begin(), slot.end(), rng.gen);
    BackendRoute r(*be, s, N, in(0), group_in(), slot);
    std::vector<double> want_stats(mohge::route_stats_size(s.E, s.Ng), 0.0);
    Ints want_off = {0}, want_ex;
    for (int t = 0; t < N; t++) {
      const auto ref = mohge::ref::route_token(s, token_row(to_double(in(0)), t, s.E),
                                               two() ? token_row(to_double(in(1)), t, s.Ng) : Vec());
      for (int e : ref.experts) want_ex.push_back(e), want_stats[e]++;
      for (int g : ref.groups) want_stats[s.E + g]++;
      want_off.push_back((int)want_ex.size());
    }
    const int A = (int)want_ex.size();
    want_stats[s.E + s.Ng] = N, want_stats[s.E + s.Ng + 1] = A, want_stats[s.E + s.Ng + 2] = -1;
    EXPECT_EQ(r.host_stats(), want_stats) << "route stats (counts, tokens, assignments, bad token)";
    EXPECT_EQ(r.first(r.offsets, N + 1), want_off) << "offsets";
    EXPECT_EQ(r.first(r.expert, A), want_ex) << "experts";
    // send layout: slots in order, each slot's assignments in token order
    std::vector<std::pair<int, int>> order;  // (slot, assignment)
    for (int j = 0; j < A; j++) order.push_back({slot[want_ex[j]], j});
    std::stable_sort(order.begin(), order.end(), [](auto& a, auto& b) { return a.first < b.first; });
    Ints want_pos(A), want_tok(A);
    for (int p = 0; p < A; p++) {
      const int j = order[p].second;
      want_pos[j] = p;
      want_tok[p] = (int)(std::upper_bound(want_off.begin(), want_off.end(), j) - want_off.begin()) - 1;
    }
    EXPECT_EQ(r.first(r.pos, A), want_pos) << "send positions";
    EXPECT_EQ(r.first(r.send_token, A), want_tok) << "send tokens";
    int zero_experts = 0;
    for (int e = 0; e < s.E; e++) zero_experts += want_stats[e] == 0;
    if (pat == Logits::starved) {
      EXPECT_GT(zero_experts, 0) << "the case should starve an expert";
    }
    // a NaN logit at token N/2: no assignment for it, reported as the first bad token
    F z = in(0);
    z[(size_t)(N / 2) * s.E] = NAN;
    BackendRoute bad(*be, s, N, z, group_in());
    const std::vector<double> st = bad.host_stats();
    EXPECT_EQ(st[s.E + s.Ng + 2], N / 2) << "first non-finite token";
    const Ints off = bad.first(bad.offsets, N + 1);
    EXPECT_EQ(off[N / 2 + 1], off[N / 2]) << "a token with a non-finite logit has no assignment";
    summary += fmt::format(" | assignments {} exact, {} experts without tokens, NaN token reported", A, zero_experts);
  }
};

// The auxiliary losses of a routing with every coefficient on: forward → total (differentiated)
// and the five coefficient-1 terms; backward = aux_loss_backward then router_backward (the
// intra-group term reaches the logits through the gate weights). global: fixed counts of a larger
// step, uploaded, instead of the micro-batch's.
struct AuxLossCase : OpCase {
  RouterSpec s;
  int N;
  bool global;
  std::vector<double> widths, omega, gstats;
  AuxLossCase(RouterSpec s, int N, bool global) : s(s), N(N), global(global) {}
  std::string op() const override { return "aux_loss"; }
  std::string shape() const override {
    const char* rule = s.rule == RouterRule::top_k ? "top_k" : s.rule == RouterRule::top_p ? "top_p" : "two_level";
    return fmt::format("N={} {} {}{}", N, rule, spec_name(s), global ? " global" : "");
  }
  bool two() const { return s.two_level(); }
  mohge::AuxLossSpec params(const double* w, const double* om) const {
    mohge::AuxLossSpec l;
    l.lb = 0.5, l.pp = 0.25, l.entropy = 0.1, l.group = 0.7, l.intra = 0.3, l.group_active = two();
    double sum = 0;
    for (double x : widths) sum += x;
    l.widths = w, l.mean_width = sum / s.E, l.group_omega = om;
    return l;
  }
  void init(Rng& rng) override {
    inputs = {{"logits", router_logits(rng, N, s.E, Logits::random)}};
    if (two()) inputs.push_back({"group_logits", router_logits(rng, N, s.Ng, Logits::random)});
    for (int e = 0; e < s.E; e++) widths.push_back(64 + 32 * (e % 5));
    for (int g = 0; g < s.Ng; g++) omega.push_back(1.0 + 0.25 * g);
    if (global) {
      double A = 0;
      for (int e = 0; e < s.E; e++) gstats.push_back(rng.ints(1, 0, 3 * N)[0]), A += gstats.back();
      for (int g = 0; g < s.Ng; g++) gstats.push_back(rng.ints(1, 0, 2 * N)[0]);
      gstats.push_back(3 * N), gstats.push_back(A);
    }
  }
  const F& group_in() const {
    static const F none;
    return two() ? in(1) : none;
  }
  // values [kAuxValues] on the backend
  std::vector<double> run(BackendRoute& r) const {
    auto w = up(widths), om = up(omega), gs = up(gstats);
    auto values = up(std::vector<double>(mohge::kAuxValues, NAN));
    be->aux_loss_forward(s, params(w.data(), om.data()), values.data(), r.tensors(), r.assignments(),
                         global ? gs.data() : r.stats.data(), N);
    return host(values);
  }
  std::vector<Tensor> forward() override {
    BackendRoute r(*be, s, N, in(0), group_in());
    const std::vector<double> v = run(r);
    return {{"total", F{(float)v[mohge::kAuxTotal]}}, {"terms", F(v.begin(), v.begin() + mohge::kAuxTotal)}};
  }
  std::vector<Vec> ref_forward(const std::vector<Vec>& x, bool) const override {
    const Vec v = mohge::ref::aux_loss(s, params(widths.data(), omega.data()), x[0], two() ? x[1] : Vec(), N,
                                       global ? &gstats : nullptr);
    return {Vec{v[mohge::kAuxTotal]}, Vec(v.begin(), v.begin() + mohge::kAuxTotal)};
  }
  void backward(const std::vector<Tensor>&, const std::vector<F>& dout, std::vector<F>& g) override {
    BackendRoute r(*be, s, N, in(0), group_in());
    auto w = up(widths), om = up(omega), gs = up(gstats);
    auto dw = up(F(r.A(), 0.f)), dz = up(g[0]);
    Buffer<float> dy = two() ? up(g[1]) : Buffer<float>();
    float* dyp = two() ? dy.data() : nullptr;
    be->aux_loss_backward(s, params(w.data(), om.data()), dw.data(), dz.data(), dyp, r.tensors(), r.assignments(),
                          global ? gs.data() : r.stats.data(), N, dout[0][0]);
    be->router_backward(s, dz.data(), dyp, dw.data(), r.tensors(), r.assignments(), N);
    g[0] = host(dz);
    if (two()) g[1] = host(dy);
  }
};

// ---------------------------------------------------------------------------------------------
// optimizer ops: sum_squares (the global gradient norm) and one AdamW step

struct SumSquaresCase : OpCase {
  int64_t N;
  explicit SumSquaresCase(int64_t N) : N(N) {}
  std::string op() const override { return "sum_squares"; }
  std::string shape() const override { return fmt::format("N={}", N); }
  bool has_backward() const override { return false; }
  void init(Rng& rng) override { inputs = {{"x", rng.uniform(N)}}; }
  double run() const {
    auto x = up_in(0);
    auto out = up(std::vector<double>{NAN});
    be->sum_squares(out.data(), x.data(), N);
    return host(out)[0];
  }
  std::vector<Tensor> forward() override { return {{"sum", F{(float)run()}}}; }
  std::vector<Vec> ref_forward(const std::vector<Vec>& x, bool) const override {
    double s = 0.0;
    for (double v : x[0]) s += v * v;
    return {Vec{s}};
  }
  void extra(Rng&, std::string& summary) override {
    // double accumulation: far below float rounding; and the same bits for any thread count
    double want = ref_forward({to_double(in(0))}, true)[0][0], got = run();
    double e = std::fabs(got - want) / std::max(want, 1e-300);
    EXPECT_LE(e, 1e-12) << "sum_squares accumulates in double";
    const int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    double one = run();
    omp_set_num_threads(threads);
    EXPECT_EQ(one, got) << "sum_squares depends on the thread count";
    summary += fmt::format(" | double {:.1e} 1-thread==N-thread {}", e, one == got);
  }
};

// Two tensors, one decayed and one not, several steps with a clip factor; the state (w, m, v)
// after the last step against the float64 reference AdamW.
struct AdamWCase : OpCase {
  int64_t n0, n1;
  int steps;
  AdamWCase(int64_t n0, int64_t n1, int steps) : n0(n0), n1(n1), steps(steps) {}
  std::string op() const override { return "adamw"; }
  std::string shape() const override { return fmt::format("n={}+{} steps={}", n0, n1, steps); }
  bool has_backward() const override { return false; }
  static constexpr double kLr = 1e-2, kB1 = 0.9, kB2 = 0.95, kEpsA = 1e-8, kWd = 0.1;
  static constexpr float kMult = 0.5f;
  // the second tensor starts at a 16-float boundary, as in the parameter table
  size_t off1() const { return (size_t)(n0 + 15) / 16 * 16; }
  size_t total() const { return off1() + n1; }
  std::vector<F> grads;  // one gradient per step
  void init(Rng& rng) override {
    inputs = {{"w", rng.uniform(total())}, {"m", rng.uniform(total(), -0.1f, 0.1f)},
              {"v", rng.uniform(total(), 0.f, 0.1f)}};
    for (int s = 0; s < steps; s++) grads.push_back(rng.uniform(total()));
  }
  std::vector<Tensor> forward() override {
    auto w = up_in(0), m = up_in(1), v = up_in(2);
    std::vector<mohge::ParamSegment> segs = {{0, n0, true}, {off1(), n1, false}};
    for (int s = 0; s < steps; s++) {
      auto g = up(grads[s]);
      be->adamw_step(w.data(), g.data(), m.data(), v.data(), segs,
                     {kLr, kB1, kB2, kEpsA, kWd, s + 1, kMult});
    }
    F hw = host(w), hm = host(m), hv = host(v);
    for (size_t i = n0; i < off1(); i++)  // padding between tensors is not a parameter: kept
      EXPECT_EQ(hw[i], in(0)[i]) << "adamw_step wrote padding at " << i;
    return {{"w", hw}, {"m", hm}, {"v", hv}};
  }
  std::vector<Vec> ref_forward(const std::vector<Vec>& x, bool) const override {
    Vec w = x[0], m = x[1], v = x[2];
    std::vector<bool> decay(total(), false);
    for (int64_t i = 0; i < n0; i++) decay[i] = true;
    std::vector<size_t> idx;
    for (int64_t i = 0; i < n0; i++) idx.push_back(i);
    for (int64_t i = 0; i < n1; i++) idx.push_back(off1() + i);
    for (int s = 0; s < steps; s++)
      mohge::ref::adamw(w, m, v, to_double(grads[s]), decay, kLr, kB1, kB2, kEpsA, kWd, s + 1, kMult);
    // the padding is untouched by definition
    for (size_t i = n0; i < off1(); i++) w[i] = x[0][i], m[i] = x[1][i], v[i] = x[2][i];
    return {w, m, v};
  }
};

// ---------------------------------------------------------------------------------------------
// the table

struct Row {
  std::string name;
  std::function<std::unique_ptr<OpCase>()> make;
};
void PrintTo(const Row& r, std::ostream* os) { *os << r.name; }

template <class Case, class... A>
Row row(A... a) {
  auto c = std::make_unique<Case>(a...);
  std::string name = c->op() + " " + c->shape();
  return {name, [=] { return std::make_unique<Case>(a...); }};
}

Ints iota(int from, int n) {
  Ints x(n);
  std::iota(x.begin(), x.end(), from);
  return x;
}
Ints ints_then(Ints x, int last) {
  x.push_back(last);
  return x;
}

std::vector<Row> all_cases() {
  return {
      row<MatmulCase>(1, 1, 1),
      row<MatmulCase>(13, 17, 11),
      row<MatmulCase>(70, 64, 96),
      row<MatmulCase>(13, 17, 11, mohge::Precision::bf16),
      row<MatmulCase>(300, 256, 96, mohge::Precision::bf16),
      // decode's shapes over frozen weights (kernels/matvec.h): one token, a batch of sequences,
      // the most rows the kernel takes; row, column and output tails; threads split the outputs
      row<MatmulCase>(1, 256, 256, mohge::Precision::fp32, true),
      row<MatmulCase>(5, 1000, 70, mohge::Precision::fp32, true),
      row<MatmulCase>(32, 256, 1024, mohge::Precision::fp32, true),
      row<MatmulCase>(3, 17, 5, mohge::Precision::fp32, true),
      row<MatmulCase>(33, 64, 96, mohge::Precision::fp32, true),  // past the kernel: the GEMM
      row<MatmulCase>(1, 256, 1024, mohge::Precision::bf16, true),
      row<MatmulCase>(7, 1001, 13, mohge::Precision::bf16, true),  // odd I: a half bf16 pair
      row<MatmulCase>(32, 512, 96, mohge::Precision::bf16, true),
      row<MatmulCase>(70, 256, 96, mohge::Precision::bf16, true),  // prefill: the GEMM on the bf16 copy
      row<EmbeddingCase>(1, 1, 1),
      row<EmbeddingCase>(20, 7, 5),
      row<EmbeddingCase>(130, 50, 33),
      row<RMSNormCase>(1, 7),
      row<RMSNormCase>(33, 64),
      row<RMSNormCase>(5, 16, 1e-4f),  // mean(x²) ≈ 3e-9 < eps: eps dominates
      row<RopeCase>(1, 1, 1, 2, 0),
      row<RopeCase>(1, 13, 2, 8, 37),
      row<RopeCase>(2, 70, 4, 16, 0),
      row<RopeCase>(1, 5, 2, 64, 100),
      row<RopeCase>(1, 6, 2, 64, 4090),  // the end of a 4096 context (SPEC §7)
      row<AttentionCase>(1, 1, 1, 1, 8),     // T=1: a single key
      row<AttentionCase>(2, 5, 3, 3, 16),    // MHA, odd head count, batch stride
      row<AttentionCase>(1, 64, 2, 2, 8),    // exactly one 64-query tile
      row<AttentionCase>(1, 70, 4, 2, 16),   // GQA, 64 + 6 queries
      row<AttentionCase>(2, 130, 4, 1, 8),   // MQA, 64 + 64 + 2 queries
      row<AttentionCase>(1, 130, 4, 4, 16),  // MHA, 64 + 64 + 2 queries
      row<AttentionCase>(1, 300, 4, 2, 16),  // GQA, 256 + 44 keys: online softmax over 2 key tiles
      row<AttentionCase>(1, 40, 2, 1, 64),   // hd 64 (the GPU configs'): 2 dims per GPU lane
      row<AttentionCase>(1, 33, 2, 2, 128),  // hd 128, the GPU kernel's largest: > 48 KiB of shared memory
      // bf16: the GPU's tensor-core kernels (64-row tiles, hd a multiple of 16 up to 128)
      row<AttentionCase>(1, 1, 1, 1, 16, mohge::Precision::bf16),    // a single key: dq = dk = 0
      row<AttentionCase>(1, 70, 4, 2, 16, mohge::Precision::bf16),   // GQA, 64 + 6 queries
      row<AttentionCase>(2, 130, 4, 1, 64, mohge::Precision::bf16),  // MQA, batch stride, 3 tiles
      row<AttentionCase>(1, 300, 4, 2, 32, mohge::Precision::bf16),  // 4 full tiles + 44
      row<AttentionCase>(1, 64, 2, 2, 48, mohge::Precision::bf16),   // exactly one tile; hd 48
      row<AttentionCase>(1, 100, 6, 2, 80, mohge::Precision::bf16),  // 3 query heads per kv head, 64 + 36; hd 80
      row<AttentionCase>(2, 65, 3, 3, 96, mohge::Precision::bf16),   // 64 + 1: a tile of one live row; hd 96
      row<AttentionCase>(1, 129, 2, 1, 112, mohge::Precision::bf16), // MQA, 2 tiles + 1 row; hd 112
      row<AttentionCase>(1, 33, 2, 2, 128, mohge::Precision::bf16),  // hd 128: the most shared memory
      row<AttentionCase>(1, 20, 2, 2, 8, mohge::Precision::bf16),    // hd 8: not a multiple of 16, fp32 kernel
      row<AttentionDecodeCase>(1, 1, 1, 1, 8, Ints{0}, Ints{0}),  // one key
      // decode: 3 sequences at different positions, GQA; a full cache (position L-1)
      row<AttentionDecodeCase>(3, 40, 4, 2, 16, Ints{0, 1, 2}, Ints{0, 39, 17}),
      // prefill: rows of one sequence at consecutive positions, beside another sequence, MQA
      row<AttentionDecodeCase>(2, 70, 4, 1, 8, Ints{1, 1, 1, 1, 0}, Ints{3, 4, 5, 6, 69}),
      row<AttentionDecodeCase>(2, 9, 3, 3, 64, Ints{1, 0}, Ints{8, 2}),  // MHA, hd 64
      // a 70-row prompt chunk at positions 200.. (query tiles of 64 + 6, key tiles of 256 + 14)
      // beside a token at the end of a 300-long cache
      row<AttentionDecodeCase>(2, 300, 4, 2, 16, ints_then(Ints(70, 0), 1), ints_then(iota(200, 70), 299)),
      // decode's one query per sequence with the head dims of the AVX-512 kernel (16·k up to 256):
      // 299 keys (tiles of 256 + 43: the second accumulates), 6 keys (under one step of 8), 1 key
      row<AttentionDecodeCase>(3, 300, 4, 2, 32, Ints{0, 1, 2}, Ints{298, 5, 0}),
      row<AttentionDecodeCase>(2, 40, 2, 1, 48, Ints{0, 1}, Ints{39, 12}),
      row<AttentionDecodeCase>(2, 40, 2, 2, 80, Ints{1, 0}, Ints{17, 31}),
      row<AttentionDecodeCase>(2, 270, 2, 1, 128, Ints{0, 1}, Ints{269, 8}),
      row<AttentionDecodeCase>(2, 40, 2, 1, 256, Ints{0, 1}, Ints{39, 7}),
      // head dims it does not take (the plain loops): not a multiple of 16, over 256
      row<AttentionDecodeCase>(2, 40, 2, 1, 24, Ints{0, 1}, Ints{39, 7}),
      row<AttentionDecodeCase>(1, 20, 2, 2, 272, Ints{0}, Ints{19}),
      row<SwiGLUCase>(1, 3.f),
      row<SwiGLUCase>(1001, 12.f),  // includes gates ±100 and 0
      row<CrossEntropyCase>(1, 2, 1.f, 1.f),
      row<CrossEntropyCase>(9, 50, 3.f, 1.f / 9),
      row<CrossEntropyCase>(4, 1000, 60.f, 0.5f),  // large logits: needs the max shift
      row<AddCase>(1),
      row<AddCase>(1001),
      row<GatherRowsCase>(1, 1, 1),
      row<GatherRowsCase>(37, 2, 16),
      row<GatherRowsCase>(130, 6, 33),
      row<CombineRowsCase>(1, 1, 1),
      row<CombineRowsCase>(37, 2, 16),
      row<CombineRowsCase>(130, 6, 33),
      row<RouterCase>(router_spec(RouterRule::top_k, 8, 2), 37, Logits::random),
      row<RouterCase>(router_spec(RouterRule::top_k, 16, 4), 130, Logits::random),  // > 64 tokens: threaded
      row<RouterCase>(router_spec(RouterRule::top_k, 8, 3), 20, Logits::ties),
      row<RouterCase>(router_spec(RouterRule::top_k, 8, 2), 50, Logits::starved),
      row<RouterCase>(router_spec(RouterRule::top_k, 1, 1), 3, Logits::random),
      row<RouterCase>(router_spec(RouterRule::top_p, 8, 0, 0.6, 4), 37, Logits::random),
      row<RouterCase>(router_spec(RouterRule::top_p, 4, 0, 0.5, 4), 5, Logits::uniform),  // prefix sums to p: 2 kept
      row<RouterCase>(router_spec(RouterRule::top_p, 8, 0, 1.0, 3), 10, Logits::random),  // p = 1: max_k kept
      row<RouterCase>(router_spec(RouterRule::top_p, 8, 0, 0.7, 8), 20, Logits::ties),
      row<RouterCase>(router_spec(RouterRule::top_p, 64, 0, 0.9, 16), 70, Logits::random),
      row<RouterCase>(router_spec(RouterRule::two_level, 12, 3, 1.0, 0, 4, 2), 37, Logits::random),
      row<RouterCase>(router_spec(RouterRule::two_level, 12, 3, 1.0, 0, 4, 2, false), 130, Logits::random),
      row<RouterCase>(router_spec(RouterRule::two_level, 6, 4, 1.0, 0, 3, 3), 20, Logits::random),  // Kg = Ng
      row<RouterCase>(router_spec(RouterRule::two_level, 8, 2, 1.0, 0, 4, 2, false), 20, Logits::ties),
      row<RouterCase>(router_spec(RouterRule::two_level, 8, 2, 1.0, 0, 4, 2), 40, Logits::starved),
      row<RouterCase>(router_spec(RouterRule::two_level, 64, 6, 1.0, 0, 8, 4), 70, Logits::random),
      row<AuxLossCase>(router_spec(RouterRule::top_k, 8, 2), 37, false),
      row<AuxLossCase>(router_spec(RouterRule::top_k, 8, 2), 130, true),
      row<AuxLossCase>(router_spec(RouterRule::top_p, 8, 0, 0.6, 4), 37, false),
      row<AuxLossCase>(router_spec(RouterRule::two_level, 12, 3, 1.0, 0, 4, 2), 37, false),
      row<AuxLossCase>(router_spec(RouterRule::two_level, 12, 3, 1.0, 0, 4, 2, false), 70, true),
      row<SumSquaresCase>(1),
      row<SumSquaresCase>(100003),
      row<AdamWCase>(1, 1, 1),
      row<AdamWCase>(1000, 37, 3),
  };
}

// ---------------------------------------------------------------------------------------------
// the driver

class OpTest : public ::testing::TestWithParam<std::tuple<std::string, Row>> {};

TEST_P(OpTest, MatchesReference) {
  const auto& [backend, r] = GetParam();
  std::string why_not;
  Backend* be = mohge::backend_find(backend, &why_not);
  if (!be) {
    fmt::print("SKIPPED {} on {}: {}\n", r.name, backend, why_not);
    GTEST_SKIP() << backend << ": " << why_not;
  }
  std::unique_ptr<OpCase> c = r.make();
  c->be = be;
  if (std::string why = c->unsupported(); !why.empty()) GTEST_SKIP() << why;
  Rng rng(fnv1a(r.name));  // the same inputs on every backend
  c->init(rng);
  std::string summary = fmt::format("{:<5} {:<12} {:<30} fwd", backend, c->op(), c->shape());

  // (a) forward
  std::vector<Tensor> outs = c->forward();
  std::vector<Vec> xin;
  for (const auto& t : c->inputs) xin.push_back(to_double(t.data));
  std::vector<Vec> refs = c->ref_forward(xin);
  ASSERT_EQ(outs.size(), refs.size());
  for (size_t o = 0; o < outs.size(); o++) {
    double e = rel_err(outs[o].data, refs[o]);
    EXPECT_LE(e, c->fwd_tol()) << "forward output " << outs[o].name;
    summary += fmt::format(" {} {:.1e}", outs[o].name, e);
  }

  if (c->has_backward()) {
    // (b) backward vs finite differences of L = Σ_o Σ g_o ⊙ ref_forward(inputs)_o
    const int ng = c->n_grad_outputs();
    std::vector<F> dout;
    for (int o = 0; o < ng; o++) dout.push_back(c->upstream(o, outs[o].data.size(), rng));
    std::vector<F> grads;
    for (const auto& t : c->inputs) grads.emplace_back(t.data.size(), 0.0f);
    c->backward(outs, dout, grads);
    summary += " | bwd";
    for (size_t i = 0; i < c->inputs.size(); i++) {
      auto loss = [&](const Vec& xi) {
        std::vector<Vec> x = xin;
        x[i] = xi;
        std::vector<Vec> y = c->ref_forward(x, /*aux=*/false);
        double L = 0.0;
        for (int o = 0; o < ng; o++)
          for (size_t j = 0; j < y[o].size(); j++) L += (double)dout[o][j] * y[o][j];
        return L;
      };
      std::vector<size_t> coords = rng.sample(xin[i].size(), kFdSamples);
      for (size_t k : c->key_coords(i))
        if (std::find(coords.begin(), coords.end(), k) == coords.end()) coords.push_back(k);
      Vec fd = mohge::ref::numerical_gradient(loss, xin[i], coords);
      Vec fast(coords.size());
      for (size_t j = 0; j < coords.size(); j++) fast[j] = grads[i][coords[j]];
      double e = rel_err(fast, fd, 1e-12);
      EXPECT_LE(e, c->bwd_tol()) << "gradient of " << c->inputs[i].name << " (max |fd| "
                                 << max_abs(fd) << ")";
      if (c->zero_grad(i)) {
        EXPECT_LE(max_abs(fd), 1e-8) << "expected a zero gradient of " << c->inputs[i].name;
        EXPECT_EQ(max_abs(grads[i]), 0.0) << "expected a zero gradient of " << c->inputs[i].name;
      } else {
        EXPECT_GT(max_abs(fd), 1e-8) << "vacuous check: gradient of " << c->inputs[i].name
                                     << " is zero on the sampled coordinates";
      }
      summary += fmt::format(" d{} {:.1e}", c->inputs[i].name, e);
    }

    // (c) backward accumulates: twice on a pre-filled buffer = pre-fill + 2 · gradient
    if (c->accumulates()) {
      std::vector<F> pre, acc;
      for (const auto& g : grads) {
        // pre-fill of the gradient's own magnitude, so a lost or doubled pre-fill shows
        const float mag = (float)std::max(max_abs(g), 1e-3);
        pre.push_back(rng.uniform(g.size(), -mag, mag));
      }
      acc = pre;
      c->backward(outs, dout, acc);
      c->backward(outs, dout, acc);
      double e = 0.0;
      for (size_t i = 0; i < grads.size(); i++) {
        Vec got(acc[i].size()), want(acc[i].size());
        for (size_t j = 0; j < got.size(); j++) {
          got[j] = (double)acc[i][j] - pre[i][j];
          want[j] = 2.0 * grads[i][j];
        }
        double ei = rel_err(got, want, 1e-30);
        EXPECT_LE(ei, kAccTol) << "backward does not accumulate into d" << c->inputs[i].name;
        e = std::max(e, ei);
      }
      summary += fmt::format(" | accumulate {:.1e}", e);
    }
  }

  // (d) op-specific properties
  c->extra(rng, summary);
  fmt::print("{}\n", summary);
}

INSTANTIATE_TEST_SUITE_P(Ops, OpTest,
                         ::testing::Combine(::testing::ValuesIn(mohge::backend_names()),
                                            ::testing::ValuesIn(all_cases())),
                         [](const ::testing::TestParamInfo<std::tuple<std::string, Row>>& info) {
                           std::string s = std::get<0>(info.param) + "_";
                           for (char ch : std::get<1>(info.param).name) {
                             if (std::isalnum((unsigned char)ch)) s += ch;
                             else if (ch == ' ' && !s.empty() && s.back() != '_') s += '_';
                           }
                           return s;
                         });

}  // namespace

// exp_approx replaces libm's expf in every softmax; its error bound is part of the op contract.
TEST(VecMath, ExpApproxMatchesExpEverywhere) {
  double worst = 0.0;
  float worst_x = 0.0f;
  for (float x = -87.0f; x < 88.0f; x += 1.3e-3f) {
    double want = std::exp((double)x), got = mohge::exp_approx(x);
    double rel = std::fabs(got - want) / want;
    if (rel > worst) worst = rel, worst_x = x;
  }
  fmt::print("exp_approx: worst relative error {:.2e} at x = {}\n", worst, worst_x);
  EXPECT_LT(worst, 2e-7);
  EXPECT_EQ(mohge::exp_approx(0.0f), 1.0f);
  EXPECT_EQ(mohge::exp_approx(-1000.0f), 0.0f);
  EXPECT_GT(mohge::exp_approx(-87.0f), 0.0f);
}

// ------------------------------------------------------------------------------------- gemm
// Every form of gemm (op(A), op(B), beta 0 / 1) with leading dimensions larger than the rows
// (sub-matrices of bigger buffers), in each precision, against float64 products of the inputs
// as the precision sees them. Odd sizes reach the kernels' edge handling; K = 0 is an empty sum.
TEST(Gemm, EveryFormAndLeadingDimensionMatchesFloat64) {
  for (mohge::Precision p : {mohge::Precision::fp32, mohge::Precision::bf16}) {
    if (p == mohge::Precision::bf16 && !mohge::bf16_supported()) {
      fmt::print("SKIPPED bf16 gemm forms: no AVX512-BF16 on this CPU\n");
      continue;
    }
    const bool bf = p == mohge::Precision::bf16;
    Rng rng(7);
    for (auto [M, N, K] : {std::tuple{1, 1, 1}, {37, 19, 45}, {130, 70, 300}, {5, 4, 0}})
      for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
          for (float beta : {0.0f, 1.0f}) {
            const int ar = ta ? K : M, ac = ta ? M : K, br = tb ? N : K, bc = tb ? K : N;
            const int lda = ac + 3, ldb = bc + 5, ldc = bf ? N : N + 2;  // bf16: packed C only
            F A = rng.uniform((size_t)ar * lda), B = rng.uniform((size_t)br * ldb);
            F C = rng.uniform((size_t)M * ldc), C0 = C;
            mohge::gemm(ta, tb, M, N, K, 1.0f, A.data(), lda, B.data(), ldb, beta, C.data(), ldc, p);
            auto seen = [&](float v) { return bf ? (double)mohge::bf16_to_float(mohge::bf16_from_float(v)) : (double)v; };
            Vec got, want;
            for (int i = 0; i < M; i++)
              for (int j = 0; j < N; j++) {
                double s = beta * (double)C0[(size_t)i * ldc + j];
                for (int k = 0; k < K; k++) {
                  double a = seen(ta ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k]);
                  double b = seen(tb ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j]);
                  s += a * b;
                }
                got.push_back(C[(size_t)i * ldc + j]);
                want.push_back(s);
              }
            EXPECT_LE(rel_err(got, want), kFwdTol)
                << mohge::precision_name(p) << " M=" << M << " N=" << N << " K=" << K << " ta=" << ta
                << " tb=" << tb << " beta=" << beta;
            // the padding between rows of C is never written
            for (int i = 0; i < M; i++)
              for (int j = N; j < ldc; j++) ASSERT_EQ(C[(size_t)i * ldc + j], C0[(size_t)i * ldc + j]);
          }
  }
}

TEST(Gemm, Bf16RoundsToNearestEven) {
  auto bits = [](float f) { return mohge::bf16_from_float(f); };
  auto f32 = [](uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; };
  EXPECT_EQ(bits(1.0f), 0x3f80);
  EXPECT_EQ(bits(-2.0f), 0xc000);
  EXPECT_EQ(bits(f32(0x3f808000)), 0x3f80);  // tie, even below: down
  EXPECT_EQ(bits(f32(0x3f818000)), 0x3f82);  // tie, even above: up
  EXPECT_EQ(bits(f32(0x3f808001)), 0x3f81);  // just above the tie: up
  EXPECT_EQ(bits(f32(0x3f807fff)), 0x3f80);  // just below: down
  EXPECT_EQ(bits(INFINITY), 0x7f80);
  EXPECT_EQ(bits(f32(0x7f7fffff)), 0x7f80);  // FLT_MAX rounds to infinity, as RNE must
  EXPECT_TRUE(std::isnan(mohge::bf16_to_float(bits(NAN))));
  EXPECT_TRUE(std::isnan(mohge::bf16_to_float(bits(f32(0x7f800001)))));  // NaN with low payload only
  EXPECT_EQ(mohge::bf16_to_float(0x3f81), 1.0078125f);
}

// to_bf16 (vectorised, AVX-512) gives bf16_from_float's bits for every kind of value: each sign
// and exponent (zeros, denormals, infinities, NaNs included) with the mantissas around the
// rounding ties, and random bit patterns; packed (every tail length) and strided, small and large.
TEST(Gemm, ToBf16MatchesBf16FromFloatBitForBit) {
  std::vector<uint32_t> bits;
  for (uint32_t se = 0; se < 512; se++)
    for (uint32_t m : {0x0u, 0x1u, 0x2u, 0x3fffu, 0x7fffu, 0x8000u, 0x8001u, 0xffffu, 0x10000u, 0x17fffu, 0x18000u,
                       0x18001u, 0x400000u, 0x400001u, 0x7f7fffu, 0x7f8000u, 0x7fffffu})
      bits.push_back(se << 23 | m);
  std::mt19937 gen(5);
  while (bits.size() < 300000) bits.push_back(gen());
  F src(bits.size());
  std::memcpy(src.data(), bits.data(), bits.size() * 4);
  auto check = [&](const std::vector<uint16_t>& got, const float* from, int64_t rows, int64_t cols, int64_t ld) {
    for (int64_t r = 0; r < rows; r++)
      for (int64_t c = 0; c < cols; c++)
        ASSERT_EQ(got[r * cols + c], mohge::bf16_from_float(from[r * ld + c]))
            << "input bits 0x" << std::hex << bits[from - src.data() + r * ld + c];
  };
  for (int64_t n : {int64_t(1), int64_t(15), int64_t(16), int64_t(17), int64_t(31), (int64_t)bits.size()}) {
    for (int64_t off = 0; off + n <= (int64_t)bits.size(); off += std::max<int64_t>(n, 977)) {
      std::vector<uint16_t> got(n);
      mohge::to_bf16(got.data(), src.data() + off, 1, n, n);
      check(got, src.data() + off, 1, n, n);
    }
  }
  for (auto [rows, cols, ld] : {std::tuple<int64_t, int64_t, int64_t>{7, 37, 41}, {3000, 33, 99}}) {
    std::vector<uint16_t> got(rows * cols);
    mohge::to_bf16(got.data(), src.data(), rows, cols, ld);
    check(got, src.data(), rows, cols, ld);
  }
}

TEST(Gemm, PrecisionNamesRoundTripAndBadNamesFail) {
  for (auto p : {mohge::Precision::fp32, mohge::Precision::bf16})
    EXPECT_EQ(mohge::precision_from_string(mohge::precision_name(p), "k"), p);
  try {
    mohge::precision_from_string("fp16", "model.matmul_precision");
    ADD_FAILURE() << "fp16 accepted";
  } catch (const mohge::Error& e) {
    EXPECT_NE(std::string(e.what()).find("model.matmul_precision"), std::string::npos) << e.what();
  }
}

// parallel_rows: every index in exactly one range, in one call per thread at most, for sizes
// around the thread count; below the threshold, or nested, one call on the calling thread.
TEST(ParallelRows, EveryIndexOnceWhateverTheSizeAndThreads) {
  const int saved = omp_get_max_threads();
  for (int threads : {1, 2, 3}) {
    omp_set_num_threads(threads);
    for (int64_t n : {0, 1, 2, 3, 5, 64, 1001}) {
      for (bool worth : {false, true}) {
        std::vector<int> seen((size_t)n, 0);
        std::vector<int> calls(threads, 0);
        mohge::parallel_rows(n, worth, [&](int64_t i0, int64_t i1) {
          ASSERT_LT(i0, i1);
          calls[omp_get_thread_num()]++;
          for (int64_t i = i0; i < i1; i++) seen[(size_t)i]++;
        });
        for (int64_t i = 0; i < n; i++) ASSERT_EQ(seen[(size_t)i], 1) << "n " << n << " index " << i;
        int total = 0;
        for (int c : calls) {
          ASSERT_LE(c, 1);
          total += c;
        }
        EXPECT_EQ(total, n == 0 ? 0 : !worth || n == 1 || threads == 1 ? 1 : std::min<int64_t>(threads, n));
      }
    }
    // inside a parallel region: the calling thread alone, without a nested region
    int outer_calls = 0, team = 0;
#pragma omp parallel num_threads(2) reduction(+ : outer_calls) reduction(max : team)
    {
      team = omp_get_num_threads();
      mohge::parallel_rows(100, true, [&](int64_t i0, int64_t i1) {
        EXPECT_EQ(i0, 0);
        EXPECT_EQ(i1, 100);
        EXPECT_EQ(omp_get_level(), 1);
        outer_calls++;
      });
    }
    EXPECT_EQ(outer_calls, team);
  }
  omp_set_num_threads(saved);
}

// run_as_team: the loops of one program handed to the region's waiting threads. Every index once,
// each range or task on one thread, the team's threads all taking part; loops inside a loop run on
// their own thread (no hand-off to a team that is busy: that would deadlock); an error thrown in a
// loop or the program reaches the caller, and the next program runs normally.
TEST(RunAsTeam, LoopsSplitAcrossTheTeamEachIndexOnce) {
  const int saved = omp_get_max_threads();
  for (int threads : {1, 2, 3}) {
    omp_set_num_threads(threads);
    for (int64_t n : {1, 2, 5, 1001}) {
      std::vector<int> rows((size_t)n, 0), tasks((size_t)n, 0), inner((size_t)n * 3, 0);
      std::vector<int> row_threads(threads, 0), task_threads(threads, 0);
      int leader = -1;
      mohge::run_as_team(true, [&] {
        leader = omp_get_thread_num();
        for (int loop = 0; loop < 50; loop++)  // many hand-offs in one program
          mohge::parallel_rows(n, true, [&](int64_t i0, int64_t i1) {
            ASSERT_LT(i0, i1);
            if (loop == 0) row_threads[omp_get_thread_num()]++;
            for (int64_t i = i0; i < i1; i++) rows[(size_t)i]++;
          });
        mohge::parallel_tasks(n, true, [&](int64_t i) {
          tasks[(size_t)i]++;
          task_threads[omp_get_thread_num()] = 1;
          const int t = omp_get_thread_num();
          // nested in a hand-off: on this thread (n = 1 runs on the idle leader, which may hand off)
          mohge::parallel_rows(3, true, [&](int64_t i0, int64_t i1) {
            if (n > 1) {
              EXPECT_EQ(omp_get_thread_num(), t);
              EXPECT_EQ(i1 - i0, 3);
            }
            for (int64_t j = i0; j < i1; j++) inner[(size_t)i * 3 + j]++;
          });
        });
      });
      EXPECT_EQ(leader, 0);
      for (int64_t i = 0; i < n; i++) {
        ASSERT_EQ(rows[(size_t)i], 50) << "n " << n << " index " << i;
        ASSERT_EQ(tasks[(size_t)i], 1) << "n " << n << " index " << i;
        for (int j = 0; j < 3; j++) ASSERT_EQ(inner[(size_t)i * 3 + j], 1);
      }
      const int expected = n == 1 ? 1 : (int)std::min<int64_t>(threads, n);
      EXPECT_EQ(std::count(row_threads.begin(), row_threads.end(), 1), expected) << "n " << n;
      EXPECT_EQ(*std::max_element(row_threads.begin(), row_threads.end()), 1);
    }
    // errors: from a loop on any thread, and from the program itself
    for (int round = 0; round < 2; round++) {
      EXPECT_THROW(mohge::run_as_team(true, [&] {
                     mohge::parallel_rows(100, true, [&](int64_t i0, int64_t) {
                       if (i0 > 0 || threads == 1) mohge::fail("loop error");
                     });
                   }),
                   mohge::Error);
      EXPECT_THROW(mohge::run_as_team(true, [&] { mohge::fail("program error"); }), mohge::Error);
      int ran = 0;
      mohge::run_as_team(true, [&] { mohge::parallel_rows(4, true, [&](int64_t i0, int64_t i1) {
#pragma omp atomic
        ran += (int)(i1 - i0);
      }); });
      EXPECT_EQ(ran, 4);
    }
  }
  omp_set_num_threads(saved);
}

// rope_apply's angles come from tables shared across calls and threads (kernels/rope_table.h); they
// must be the bits of the direct formula, cos and sin of pos·θ^(−2i/hd) in double rounded to float,
// at every position: inside a table, past its growth, and past kRopeTableMaxPositions (computed
// row by row). Rotating x = (1, …, 1, 0, …, 0) gives (cos a_i, sin a_i) exactly; the inverse −sin.
// Several threads at once, with more (θ, hd) pairs than the cache keeps, so tables are built,
// grown and dropped while others read theirs.
TEST(Rope, TablesGiveTheDirectFormulasBitsAtEveryPosition) {
  auto check = [](float theta, int hd, int pos0, int T, bool inverse) {
    const int half = hd / 2;
    F x((size_t)T * hd, 0.0f);
    for (int t = 0; t < T; t++) std::fill_n(x.begin() + (size_t)t * hd, half, 1.0f);
    mohge::rope_apply(x.data(), 1, T, 1, hd, theta, pos0, inverse);
    for (int t = 0; t < T; t++)
      for (int i = 0; i < half; i++) {
        const double a = (double)(pos0 + t) * std::pow((double)theta, -2.0 * i / hd);
        const float c = (float)std::cos(a), s = (float)std::sin(a) * (inverse ? -1.0f : 1.0f);
        // == rather than the bits: the rotation's 0·cos + (−0) gives +0 where sin is −0
        if (x[(size_t)t * hd + i] != c || x[(size_t)t * hd + half + i] != s) {
          ADD_FAILURE() << "theta " << theta << " hd " << hd << " position " << pos0 + t << " i " << i << ": got "
                        << x[(size_t)t * hd + i] << ", " << x[(size_t)t * hd + half + i] << " want " << c << ", " << s;
          return;
        }
      }
  };
  const int max = (int)mohge::kRopeTableMaxPositions;
  auto sweep = [&](float theta, int hd) {
    for (int pos0 : {0, 1, 250, 255, 1000, 4090, max - 3, max, 100000, (1 << 24) + 3})
      for (bool inverse : {false, true}) check(theta, hd, pos0, 6, inverse);
  };
  sweep(10000.0f, 64);  // grows the table from 256 positions to the cap
  std::vector<std::thread> threads;
  for (int k = 0; k < 6; k++)
    threads.emplace_back([&, k] { sweep(k % 2 ? 500000.0f : 10000.0f, 8 << (k % 3)); });
  for (auto& t : threads) t.join();
}
