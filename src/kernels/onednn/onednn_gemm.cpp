// defines: mohge_onednn_gemm — the entry point of the module libmohge_onednn.so: the GEMMs of
//          kernels/gemm_library.h on oneDNN, dnnl_sgemm for fp32 (JIT AVX-512 kernels, OpenMP
//          threading) and a bf16 matmul primitive (AVX512-BF16) for mixed precision
// oneDNN rather than OpenBLAS: its sgemm is up to 15% faster on most of the engine's shapes
// (bench/bench_gemm.cpp; training about 10% faster end to end, docs/BENCHMARKS.md), and
// Debian's OpenBLAS 0.3.21 has no bf16 GEMM. oneDNN's OpenMP calls bind to the binary's runtime
// (libomp, CMakeLists.txt), as when it was linked into the binary.
#include <dnnl.hpp>

#include <map>
#include <memory>
#include <mutex>
#include <tuple>

#include "core/error.h"
#include "kernels/gemm_library.h"

namespace mohge {
namespace {

// bf16 matmul primitives, one per form and fixed dimensions. The token count changes every step
// (it is an expert's row count), so that one dimension is left to run time: M, or K in the
// weight-gradient form (Aᵀ·B). A primitive per exact shape would be re-created each step, and
// leaving every dimension to run time makes oneDNN pick a slow kernel (~20 GFLOP/s).
class Bf16Matmuls {
 public:
  Bf16Matmuls() {
    // ISA values are bit sets: a superset ISA contains every bit of avx512_core_bf16
    const auto isa = (unsigned)dnnl::get_effective_cpu_isa();
    const auto bf16 = (unsigned)dnnl::cpu_isa::avx512_core_bf16;
    supported_ = (isa & bf16) == bf16;
  }
  bool supported() const { return supported_; }
  const dnnl::engine& engine() const { return eng_; }

  // The primitive for op(A)[M,K]·op(B)[K,N] (+= C when acc), A and B packed untransposed.
  const dnnl::matmul& get(bool ta, bool tb, bool acc, int M, int N, int K) {
    const bool runtime_k = ta && !tb;
    const std::tuple<bool, bool, bool, int, int> key{ta, tb, acc, runtime_k ? M : K, N};
    std::lock_guard<std::mutex> lock(mu_);
    auto it = cache_.find(key);
    if (it != cache_.end()) return it->second;
    using dt = dnnl::memory::data_type;
    using tag = dnnl::memory::format_tag;
    const dnnl::memory::dim R = DNNL_RUNTIME_DIM_VAL, m = runtime_k ? M : R, k = runtime_k ? R : K;
    dnnl::memory::desc a({m, k}, dt::bf16, ta ? tag::ba : tag::ab);
    dnnl::memory::desc b({k, N}, dt::bf16, tb ? tag::ba : tag::ab);
    dnnl::memory::desc c({m, N}, dt::f32, tag::ab);
    dnnl::primitive_attr attr;
    if (acc) {
      dnnl::post_ops po;
      po.append_sum(1.0f);
      attr.set_post_ops(po);
    }
    dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a, b, c), attr, eng_);
    return cache_.emplace(key, dnnl::matmul(pd)).first->second;
  }

 private:
  dnnl::engine eng_{dnnl::engine::kind::cpu, 0};
  bool supported_ = false;
  std::mutex mu_;
  std::map<std::tuple<bool, bool, bool, int, int>, dnnl::matmul> cache_;
};

Bf16Matmuls& bf16_matmuls() {
  static Bf16Matmuls m;  // created on first use; thread-safe (magic static)
  return m;
}

// C[M,N] (+= when acc) op(A)[M,K]·op(B)[K,N] from packed bfloat16 operands.
void bf16_matmul(bool ta, bool tb, int M, int N, int K, const uint16_t* A, const uint16_t* B, bool acc, float* C) {
  Bf16Matmuls& mm = bf16_matmuls();
  MOHGE_CHECK(mm.supported(), "bf16 matmuls need a CPU with AVX512-BF16 (this one has none): use "
              "run.matmul_precision = \"fp32\"");
  thread_local std::unique_ptr<dnnl::stream> stream;  // experts call this from several threads
  if (!stream) stream = std::make_unique<dnnl::stream>(mm.engine());
  using dt = dnnl::memory::data_type;
  using tag = dnnl::memory::format_tag;
  const dnnl::matmul& prim = mm.get(ta, tb, acc, M, N, K);
  dnnl::memory am({{M, K}, dt::bf16, ta ? tag::ba : tag::ab}, mm.engine(), const_cast<uint16_t*>(A));
  dnnl::memory bm({{K, N}, dt::bf16, tb ? tag::ba : tag::ab}, mm.engine(), const_cast<uint16_t*>(B));
  dnnl::memory cm({{M, N}, dt::f32, tag::ab}, mm.engine(), C);
  prim.execute(*stream, {{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_DST, cm}});
}

// C = alpha·op(A)·op(B) + beta·C through oneDNN's sgemm
void sgemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda, const float* B,
           int ldb, float beta, float* C, int ldc) {
  dnnl_status_t st = dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', M, N, K, alpha, A, lda,
                                B, ldb, beta, C, ldc);
  MOHGE_CHECK(st == dnnl_success, "gemm: oneDNN sgemm failed (status {}) for M={} N={} K={} "
              "lda={} ldb={} ldc={}", (int)st, M, N, K, lda, ldb, ldc);
}

bool bf16_supported() { return bf16_matmuls().supported(); }

}  // namespace
}  // namespace mohge

// The module's one symbol, unmangled for dlsym: its function table, valid while it is loaded.
extern "C" const mohge::GemmLibrary* mohge_onednn_gemm() {
  static const mohge::GemmLibrary lib{mohge::sgemm, mohge::bf16_supported, mohge::bf16_matmul};
  return &lib;
}
