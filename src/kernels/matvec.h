// defines: matvec — the matrix product of decoding, out[N,O] = inp[N,I]·w[O,I]ᵀ for a few rows
// (N ≤ kMatvecMaxRows: one token per running sequence), with fp32 or bf16 weights.
// Decode is bound by reading the weights, not by arithmetic: a GEMM library packs and blocks for
// large N and reads w more than once per call (oneDNN was ~1.75× slower than ggml's matrix–vector
// kernels here, issue 11). This kernel streams each weight row once for all N rows, the threads
// splitting the output rows, with AVX-512 FMA (fp32) or AVX512-BF16 vdpbf16ps (bf16 pairs, fp32
// sums). Each out[n,o] is one thread's sum in a fixed order whatever N, the tile or the thread
// count: a sequence decodes to the same bits alone or batched with others.
// Used for inference weights only (Backend::set_inference_weights): its sums are ordered
// differently from the GEMM's, so training, which never declares its weights frozen, is unchanged.
#pragma once
#include <cstdint>

namespace mohge {

inline constexpr int kMatvecMaxRows = 32;  // above this oneDNN's GEMM is as fast (bench_infer)

// Whether this build has the kernels: fp32 needs AVX-512F, bf16 also AVX512-BF16 (compile-time:
// the engine is built with -march=native).
bool matvec_supported();
bool matvec_bf16_supported();

// One product of matvec: out[N,O] and its weights w[O,I] (float, or bfloat16 bits).
template <class T>
struct MatvecProduct {
  float* out;
  const T* w;
  int O;
};
inline constexpr int kMatvecMaxProducts = 4;  // products of one input: q, k, v; gate, up

// out_j[N,O_j] (+= when accumulate) inp[N,I]·w_j[O_j,I]ᵀ for count ≤ kMatvecMaxProducts products
// of one input, rows packed (strides I and O_j), N ≥ 1: the threads split the output rows of all
// of them, so several products cost one parallel region. fp32 weights: fp32 products and sums.
// bf16 weights (bfloat16 bits, gemm.h's rounding): inp is rounded to bf16 too (once for all the
// products) and products are summed in fp32 — gemm's Precision::bf16 contract. Each output is the
// same bits whatever the other products, rows and threads.
void matvec(const MatvecProduct<float>* products, int count, const float* inp, int N, int I, bool accumulate);
void matvec(const MatvecProduct<uint16_t>* products, int count, const float* inp, int N, int I, bool accumulate);

// One product: out[N,O] (+= when accumulate) inp[N,I]·w[O,I]ᵀ.
template <class T>
void matvec(float* out, const float* inp, const T* w, int N, int I, int O, bool accumulate) {
  const MatvecProduct<T> one{out, w, O};
  matvec(&one, 1, inp, N, I, accumulate);
}

}  // namespace mohge
