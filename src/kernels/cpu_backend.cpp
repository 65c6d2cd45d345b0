// defines: CpuBackend — the Backend over host memory and the OpenMP/oneDNN kernels of ops.h — and
// the backend registry. The CPU backend is the truth every other backend is tested against.
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>

#include "core/error.h"
#include "core/huge_pages.h"
#include "core/module.h"
#include "kernels/backend.h"
#include "kernels/gemm.h"
#include "kernels/matvec.h"
#include "kernels/ops.h"
#include "kernels/parallel.h"

namespace mohge {

namespace {

class CpuBackend final : public Backend {
 public:
  const char* name() const override { return "cpu"; }
  bool host_accessible() const override { return true; }

  void* alloc(size_t bytes) override {
    if (bytes == 0) return nullptr;
    // 64-byte alignment: every tensor starts on a cache line (and an AVX-512 vector)
    void* p = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
    MOHGE_CHECK(p, "out of memory: cannot allocate {:.1f} MiB on the cpu backend", bytes / 1048576.0);
    return p;
  }
  void free(void* p) noexcept override { std::free(p); }
  void upload(void* dst, const void* src, size_t bytes) override { copy(dst, src, bytes); }
  void download(void* dst, const void* src, size_t bytes) override { copy(dst, src, bytes); }
  void copy(void* dst, const void* src, size_t bytes) override {
    if (bytes) std::memcpy(dst, src, bytes);
  }
  void fill(float* x, float value, int64_t n) override { std::fill(x, x + n, value); }
  void zero(void* p, size_t bytes) override {
    if (bytes) std::memset(p, 0, bytes);
  }
  void synchronize() override {}  // every op has finished when it returns

  void set_inference_weights(const std::vector<WeightRange>& tensors, bool bf16) override {
    // bf16: the copies in one buffer, each from a cache line, written to huge pages rather than a
    // few hundred KB each to fresh 4 KiB pages (core/huge_pages.h); freed with the last tensor.
    // Only here: advising every large buffer slowed MoE training 5-9 % (bench_train, moe fp32).
    std::shared_ptr<uint16_t> copies;
    std::vector<size_t> at(tensors.size());
    if (bf16) {
      MOHGE_CHECK(matvec_bf16_supported(), "bf16 weights need a CPU with AVX512-BF16 and a build for "
                  "it (-march=native; this one has none): use fp32 weights");
      size_t total = 0;
      for (size_t j = 0; j < tensors.size(); j++) at[j] = total, total += (tensors[j].n + 31) / 32 * 32;
      const size_t bytes = total * sizeof(uint16_t);
      copies.reset(static_cast<uint16_t*>(alloc_huge_pages(bytes)), [bytes](uint16_t* p) { free_huge_pages(p, bytes); });
      MOHGE_CHECK(copies || bytes == 0, "out of memory: cannot allocate {:.1f} MiB for bf16 weights on the cpu backend",
                  bytes / 1048576.0);
      for (size_t j = 0; j < tensors.size(); j++) {
        const int64_t n = (int64_t)tensors[j].n;
        to_bf16(copies.get() + at[j], tensors[j].w, 1, n, n);
      }
    }
    // the entries built apart, then moved in without allocating (merge): none or all are declared
    std::map<const float*, Frozen> add;
    for (size_t j = 0; j < tensors.size(); j++)
      add[tensors[j].w] = Frozen{tensors[j].n, bf16 ? copies.get() + at[j] : nullptr, copies};
    std::unique_lock lock(frozen_mu_);
    for (const auto& [w, f] : add)
      MOHGE_CHECK(!frozen_.count(w), "set_inference_weights: a tensor is declared twice (clear it first)");
    frozen_.merge(add);
  }
  void clear_inference_weights(const float* w) override {
    std::unique_lock lock(frozen_mu_);
    frozen_.erase(w);
  }

  void run_decode_step(int rows, const std::function<void()>& step) override {
    bool frozen;
    {
      std::shared_lock lock(frozen_mu_);
      frozen = !frozen_.empty();
    }
    run_as_team(frozen && rows <= kMatvecMaxRows && matvec_supported(), step);
  }

  // Over frozen weights: a few rows through the matrix–vector kernel (bf16 weights when the
  // product is bf16 and the backend holds them so), more rows through matmul_frozen_rows; anything
  // else, training included, through the GEMM.
  void matmul_forward(float* out, const float* inp, const float* w, int N, int I, int O,
                      bool accumulate, Precision p) override {
    std::shared_lock lock(frozen_mu_);
    if (const uint16_t* w16; frozen_at(w, &w16)) {
      if (N <= kMatvecMaxRows && matvec_supported() && (p == Precision::fp32 || w16))
        return p == Precision::fp32 ? matvec(out, inp, w, N, I, O, accumulate) : matvec(out, inp, w16, N, I, O, accumulate);
      if (p == Precision::fp32 || w16) {
        const SharedInputProduct product{out, w, O};
        return matmul_frozen_rows(inp, &product, &w16, 1, N, I, accumulate, p);
      }
    }
    lock.unlock();
    mohge::matmul_forward(out, inp, w, N, I, O, accumulate, p);
  }
  // Products of one input over frozen weights: a few rows through one matrix–vector call for all
  // of them, more through matmul_frozen_rows (one parallel region either way). Otherwise each as
  // matmul_forward.
  void matmul_forward_shared(const float* inp, const SharedInputProduct* products, int count, int N, int I,
                             Precision p) override {
    if (count <= kMatvecMaxProducts) {
      const uint16_t* w16[kMatvecMaxProducts];
      bool all = true;
      std::shared_lock lock(frozen_mu_);
      for (int j = 0; j < count && all; j++) all = frozen_at(products[j].w, &w16[j]) && (p == Precision::fp32 || w16[j]);
      if (all && N <= kMatvecMaxRows && matvec_supported()) {
        MatvecProduct<float> f32[kMatvecMaxProducts];
        MatvecProduct<uint16_t> b16[kMatvecMaxProducts];
        for (int j = 0; j < count; j++) f32[j] = {products[j].out, products[j].w, products[j].O}, b16[j] = {products[j].out, w16[j], products[j].O};
        return p == Precision::fp32 ? matvec(f32, count, inp, N, I, false) : matvec(b16, count, inp, N, I, false);
      }
      if (all) return matmul_frozen_rows(inp, products, w16, count, N, I, false, p);
    }
    Backend::matmul_forward_shared(inp, products, count, N, I, p);
  }
  void matmul_backward(float* dinp, float* dw, const float* dout, const float* inp, const float* w,
                       int N, int I, int O, Precision p) override {
    mohge::matmul_backward(dinp, dw, dout, inp, w, N, I, O, p);
  }
  void embedding_forward(float* out, const int32_t* tokens, const float* wte, int N, int C) override {
    mohge::embedding_forward(out, tokens, wte, N, C);
  }
  void embedding_backward(float* dwte, const float* dout, const int32_t* tokens, int N, int C) override {
    mohge::embedding_backward(dwte, dout, tokens, N, C);
  }
  void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* w, int N, int C,
                       float eps) override {
    mohge::rmsnorm_forward(out, rstd, inp, w, N, C, eps);
  }
  void rmsnorm_backward(float* dinp, float* dw, const float* dout, const float* inp, const float* w,
                        const float* rstd, int N, int C) override {
    mohge::rmsnorm_backward(dinp, dw, dout, inp, w, rstd, N, C);
  }
  void rope_apply(float* x, int B, int T, int H, int hd, float theta, int pos0, bool inverse) override {
    mohge::rope_apply(x, B, T, H, hd, theta, pos0, inverse);
  }
  void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v,
                         int B, int T, int H, int KVH, int hd, Precision) override {
    mohge::attention_forward(out, lse, q, k, v, B, T, H, KVH, hd);
  }
  void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* out,
                          const float* lse, const float* q, const float* k, const float* v, int B,
                          int T, int H, int KVH, int hd, Precision) override {
    mohge::attention_backward(dq, dk, dv, dout, out, lse, q, k, v, B, T, H, KVH, hd);
  }
  void attention_decode(float* out, const float* q, const float* kcache, const float* vcache,
                        const int32_t* seq, const int32_t* pos, int N, int max_len, int H, int KVH,
                        int hd) override {
    mohge::attention_decode(out, q, kcache, vcache, seq, pos, N, max_len, H, KVH, hd);
  }
  void swiglu_forward(float* out, const float* gate, const float* up, int64_t n) override {
    mohge::swiglu_forward(out, gate, up, n);
  }
  void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate,
                       const float* up, int64_t n) override {
    mohge::swiglu_backward(dgate, dup, dout, gate, up, n);
  }
  void crossentropy_forward(float* losses, float* lse, double* loss_sum, const float* logits,
                            const int32_t* targets, int N, int V) override {
    *loss_sum += mohge::crossentropy_forward(losses, lse, logits, targets, N, V);
  }
  void crossentropy_backward(float* dlogits, const float* logits, const float* lse,
                             const int32_t* targets, int N, int V, float dscale) override {
    mohge::crossentropy_backward(dlogits, logits, lse, targets, N, V, dscale);
  }
  void add_inplace(float* y, const float* x, int64_t n) override { mohge::add_inplace(y, x, n); }

  void gather_rows(float* out, const float* inp, const int32_t* src, int P, int d) override {
    mohge::gather_rows(out, inp, src, P, d);
  }
  void gather_rows_backward(float* dinp, const float* dout, const int32_t* offsets,
                            const int32_t* pos, int N, int d) override {
    mohge::gather_rows_backward(dinp, dout, offsets, pos, N, d);
  }
  void combine_rows(float* out, const float* y, const float* weight, const int32_t* offsets,
                    const int32_t* pos, int N, int d) override {
    mohge::combine_rows(out, y, weight, offsets, pos, N, d);
  }
  void combine_rows_backward(float* dy, float* dweight, const float* dout, const float* y,
                             const float* weight, const int32_t* offsets, const int32_t* pos, int N,
                             int d) override {
    mohge::combine_rows_backward(dy, dweight, dout, y, weight, offsets, pos, N, d);
  }

  void router_forward(const RouterSpec& s, const RouterTensors& r, const float* logits, const float* group_logits,
                      int N) override {
    mohge::router_forward(s, r, logits, group_logits, N);
  }
  void router_assign(const RouterSpec& s, const RouteAssignments& a, double* stats, const RouterTensors& r,
                     const int32_t* slot, int N) override {
    mohge::router_assign(s, a, stats, r, slot, N);
  }
  void router_backward(const RouterSpec& s, float* dlogits, float* dgroup_logits, const float* dweight,
                       const RouterTensors& r, const RouteAssignments& a, int N) override {
    mohge::router_backward(s, dlogits, dgroup_logits, dweight, r, a, N);
  }
  void aux_loss_forward(const RouterSpec& s, const AuxLossSpec& l, double* values, const RouterTensors& r,
                        const RouteAssignments& a, const double* stats, int N) override {
    mohge::aux_loss_forward(s, l, values, r, a, stats, N);
  }
  void aux_loss_backward(const RouterSpec& s, const AuxLossSpec& l, float* dweight, float* dlogits,
                         float* dgroup_logits, const RouterTensors& r, const RouteAssignments& a,
                         const double* stats, int N, float grad_scale) override {
    mohge::aux_loss_backward(s, l, dweight, dlogits, dgroup_logits, r, a, stats, N, grad_scale);
  }

  void sum_squares(double* out, const float* x, int64_t n) override { *out = mohge::sum_squares(x, n); }
  void adamw_step(float* w, const float* g, float* m, float* v, const std::vector<ParamSegment>& segs,
                  const AdamWStep& s) override {
    mohge::adamw_step(w, g, m, v, segs, s);
  }

 private:
  // Frozen weight ranges by their first element, with their bf16 copies when asked for.
  struct Frozen {
    size_t n;
    const uint16_t* bf16;               // 64-byte aligned; null without a copy
    std::shared_ptr<uint16_t> storage;  // the buffer of this declaration's copies
  };
  std::shared_mutex frozen_mu_;
  std::map<const float*, Frozen> frozen_;
  // Whether w lies in a frozen tensor; then *w16 is w's place in its bf16 copy (null when there is
  // none). Under frozen_mu_.
  bool frozen_at(const float* w, const uint16_t** w16) const {
    auto it = frozen_.upper_bound(w);  // the tensor starting at or before w, if w is in it
    if (it == frozen_.begin() || (--it, w >= it->first + it->second.n)) return false;
    *w16 = it->second.bf16 ? it->second.bf16 + (w - it->first) : nullptr;
    return true;
  }
  // out_j[N,O_j] (+= when accumulate) inp[N,I]·w_j[O_j,I]ᵀ for count products of frozen weights
  // (bf16: through their copies w16_j): the rows split across the threads in one parallel region,
  // each thread's rows of every product through a single-threaded GEMM. Faster than letting oneDNN
  // split each product in a region of its own: the dense preset's prefill +17 % fp32, +11 % bf16
  // at 2 threads (bench_infer, docs/BENCHMARKS.md); one thread runs the same GEMMs as before.
  // Equal to the unsplit product within rounding (oneDNN's kernel may depend on the number of rows).
  static void matmul_frozen_rows(const float* inp, const SharedInputProduct* products, const uint16_t* const* w16,
                                 int count, int N, int I, bool accumulate, Precision p) {
    gemm_ready();  // a load error cannot leave the parallel region
    parallel_rows(N, true, [&](int64_t n0, int64_t n1) {
      const float* x = inp + n0 * I;
      for (int j = 0; j < count; j++) {
        const SharedInputProduct& y = products[j];
        if (p == Precision::fp32) mohge::matmul_forward(y.out + n0 * y.O, x, y.w, (int)(n1 - n0), I, y.O, accumulate, p);
        else matmul_bf16_weights(y.out + n0 * y.O, x, w16[j], (int)(n1 - n0), I, y.O, accumulate);
      }
    });
  }
};

}  // namespace

Backend& cpu_backend() {
  static CpuBackend be;
  return be;
}


const std::vector<std::string>& backend_names() {
  static const std::vector<std::string> names = {"cpu", "cuda"};
  return names;
}

Backend* backend_find(const std::string& name, std::string* why_not) {
  if (name == "cpu") return &cpu_backend();
  if (name == "cuda") {
#ifdef MOHGE_HAVE_CUDA
    // The module (kernels/cuda/CMakeLists.txt) is loaded on first use, so that CPU runs never map
    // the CUDA libraries; MOHGE_CUDA_MODULE in the environment overrides where it is.
    using Entry = Backend* (*)(std::string*);
    static Entry entry = nullptr;
    static std::string load_error;
    static std::once_flag once;
    std::call_once(once, [] {
      try {
        entry = reinterpret_cast<Entry>(module_entry("CUDA backend", "MOHGE_CUDA_MODULE", MOHGE_CUDA_MODULE,
                                                     "mohge_cuda_backend"));
      } catch (const Error& e) {
        load_error = e.what();
      }
    });
    if (entry) return entry(why_not);
    if (why_not) *why_not = load_error;
    return nullptr;
#else
    if (why_not) *why_not = "the cuda backend is not compiled in (configure with -DMOHGE_CUDA=ON where the CUDA toolkit is installed)";
    return nullptr;
#endif
  }
  fail("unknown backend '{}' (known: cpu, cuda)", name);
}

Backend& backend_get(const std::string& name) {
  std::string why;
  Backend* be = backend_find(name, &why);
  MOHGE_CHECK(be, "backend '{}' cannot run here: {}", name, why);
  return *be;
}

}  // namespace mohge
