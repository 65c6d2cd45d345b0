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

// out[N,O] (+= when accumulate) inp[N,I]·w[O,I]ᵀ, rows packed (strides I and O), N ≥ 1.
// fp32 weights: fp32 products and sums. bf16 weights (bfloat16 bits, gemm.h's rounding): inp is
// rounded to bf16 too and products are summed in fp32 — gemm's Precision::bf16 contract.
void matvec(float* out, const float* inp, const float* w, int N, int I, int O, bool accumulate);
void matvec(float* out, const float* inp, const uint16_t* w, int N, int I, int O, bool accumulate);

}  // namespace mohge
