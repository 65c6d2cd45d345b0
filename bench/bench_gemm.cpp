// bench_gemm: the engine's GEMM shapes through kernels/gemm.h (oneDNN; fp32 and bf16) and, when
// built with it, OpenBLAS's cblas_sgemm — the measurement behind the choice of GEMM backend.
//   bench_gemm [--seconds S]
// Prints JSON: per shape and form (NT = forward, NN = input gradient, TN = weight gradient),
// GFLOP/s with all threads, and "concurrent": every thread running its own single-threaded call
// at once (how experts run when there are several per thread), in total GFLOP/s.
#include <omp.h>

#include <functional>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>
#ifdef MOHGE_BENCH_OPENBLAS
#include <cblas.h>
#endif

#include "kernels/gemm.h"
#include "timing.h"

using namespace mohge;

static double g_seconds = 0.3;

static double time_it(const std::function<void()>& fn) {
  return bench::best_seconds_per_call(fn, 3, g_seconds / 3);
}

struct Backend {
  const char* name;
  void (*run)(bool ta, bool tb, int M, int N, int K, const float* A, int lda, const float* B,
              int ldb, float* C, int ldc);
};

int main(int argc, char** argv) {
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    if (a == "--seconds" && i + 1 < argc) g_seconds = std::stod(argv[++i]);
    else {
      std::fprintf(stderr, "error: unknown argument %s (usage: bench_gemm [--seconds S])\n", a.c_str());
      return 2;
    }
  }
  std::vector<Backend> backends = {
      {"onednn_fp32", [](bool ta, bool tb, int M, int N, int K, const float* A, int lda, const float* B, int ldb, float* C, int ldc) {
         gemm(ta, tb, M, N, K, 1.0f, A, lda, B, ldb, 1.0f, C, ldc, Precision::fp32);
       }}};
  if (bf16_supported())
    backends.push_back({"onednn_bf16", [](bool ta, bool tb, int M, int N, int K, const float* A, int lda, const float* B, int ldb, float* C, int ldc) {
                          gemm(ta, tb, M, N, K, 1.0f, A, lda, B, ldb, 1.0f, C, ldc, Precision::bf16);
                        }});
#ifdef MOHGE_BENCH_OPENBLAS
  backends.push_back({"openblas_fp32", [](bool ta, bool tb, int M, int N, int K, const float* A, int lda, const float* B, int ldb, float* C, int ldc) {
                        cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                                    M, N, K, 1.0f, A, lda, B, ldb, 1.0f, C, ldc);
                      }});
#endif
  // (label, rows, in, out) of a Linear: forward NT [rows,in]·[out,in]ᵀ, input gradient NN
  // [rows,out]·[out,in], weight gradient TN [rows,out]ᵀ·[rows,in].
  struct Shape { const char* label; int rows, in, out; };
  const Shape shapes[] = {{"lm_head", 2048, 256, 8192}, {"qkv_proj", 2048, 256, 768},
                          {"expert_512rows", 512, 256, 512}, {"expert_64rows", 64, 256, 512},
                          {"expert_down_512rows", 512, 512, 256}};
  const int T = omp_get_max_threads();
  nlohmann::json results = nlohmann::json::array();
  for (const Shape& s : shapes)
    for (int form = 0; form < 3; form++) {
      // C[M,N] = op(A)[M,K]·op(B)[K,N]
      const bool ta = form == 2, tb = form == 0;
      const int M = form == 2 ? s.out : s.rows, N = form == 0 ? s.out : s.in, K = form == 0 ? s.in : form == 1 ? s.out : s.rows;
      const int lda = ta ? M : K, ldb = tb ? K : N;
      const double flops = 2.0 * M * N * K;
      std::vector<std::vector<float>> A(T, std::vector<float>((size_t)M * K, 0.01f)),
          B(T, std::vector<float>((size_t)K * N, 0.02f)), C(T, std::vector<float>((size_t)M * N, 0.0f));
      nlohmann::json r = {{"shape", s.label}, {"form", form == 0 ? "NT" : form == 1 ? "NN" : "TN"},
                          {"M", M}, {"N", N}, {"K", K}};
      for (const Backend& b : backends) {
        double all = time_it([&] { b.run(ta, tb, M, N, K, A[0].data(), lda, B[0].data(), ldb, C[0].data(), N); });
        double conc = time_it([&] {
#pragma omp parallel
          {
            int t = omp_get_thread_num();
            b.run(ta, tb, M, N, K, A[t].data(), lda, B[t].data(), ldb, C[t].data(), N);
          }
        });
        r[b.name] = {{"gflops", flops / all / 1e9}, {"concurrent_gflops", T * flops / conc / 1e9}};
      }
      results.push_back(r);
    }
  nlohmann::json j = {{"threads", T}, {"results", results}};
  std::printf("%s\n", j.dump(1).c_str());
}
