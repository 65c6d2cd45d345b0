// defines: the CPU kernels behind CpuBackend (kernels/cpu_backend.cpp), each a forward/backward
// pair. Engine code never calls these directly: it goes through a Backend (kernels/backend.h),
// whose comments are the contracts; tests/test_ops.cpp checks every op of every backend against
// the float64 reference in reference.h.
// Shapes use N = rows (tokens), C/I/O = feature sizes, B/T/H = batch, time, heads, hd = head dim.
// Backward functions ACCUMULATE (+=) into every gradient they are given, like llm.c: a tensor
// that feeds two consumers gets both contributions without extra buffers. Callers zero grads.
#pragma once
#include <cstdint>
#include <vector>

#include "kernels/backend.h"
#include "kernels/gemm.h"

namespace mohge {

// out[N,O] = inp[N,I] · w[O,I]ᵀ  (w shaped like torch.nn.Linear); accumulate adds into out.
// p = bf16: inputs rounded to bfloat16, sums in fp32 (gemm.h).
void matmul_forward(float* out, const float* inp, const float* w, int N, int I, int O,
                    bool accumulate = false, Precision p = Precision::fp32);
// dinp[N,I] += dout[N,O] · w[O,I];  dw[O,I] += doutᵀ · inp.  Either output may be null.
void matmul_backward(float* dinp, float* dw, const float* dout, const float* inp, const float* w,
                     int N, int I, int O, Precision p = Precision::fp32);

// out[N,C] = wte[tokens[n], :]
void embedding_forward(float* out, const int32_t* tokens, const float* wte, int N, int C);
// dwte[V,C] += scatter of dout[N,C] by token
void embedding_backward(float* dwte, const float* dout, const int32_t* tokens, int N, int C);

// out[N,C] = inp · rsqrt(mean(inp²) + eps) · w;  rstd[N] saved for backward
void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* w, int N, int C,
                     float eps);
void rmsnorm_backward(float* dinp, float* dw, const float* dout, const float* inp, const float* w,
                      const float* rstd, int N, int C);

// Rotary embedding, rotate-half convention, in place on x[B,T,H,hd] at positions pos0 + t.
// RoPE is a rotation, so backward is the inverse rotation applied to the gradient (inverse=true).
void rope_apply(float* x, int B, int T, int H, int hd, float theta, int pos0, bool inverse);

// Causal attention, flash-attention's algorithm (Dao et al. 2022, FlashAttention-2 2023) on the
// CPU. q[B,T,H,hd], k/v[B,T,KVH,hd] (H % KVH == 0, query head h reads kv head h / (H/KVH)) ->
// out[B,T,H,hd] = softmax(q·kᵀ/√hd, keys s ≤ t)·v. Keys are visited in tiles with an online
// softmax, so memory is O(T) (no T×T probabilities); lse[B,H,T] receives each row's
// log-sum-exp of the scaled scores, all backward needs to recompute the probabilities.
void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v,
                       int B, int T, int H, int KVH, int hd);
// dq[B,T,H,hd], dk/dv[B,T,KVH,hd] += gradients for dout[B,T,H,hd], given forward's out and lse.
// Probabilities are recomputed tile by tile; the result does not depend on the thread count.
void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* out,
                        const float* lse, const float* q, const float* k, const float* v, int B,
                        int T, int H, int KVH, int hd);

// Attention of N query rows over a key/value cache (decode and prefill with a KV cache, SPEC §1).
// q[N,H,hd] -> out[N,H,hd]; kcache/vcache[S,max_len,KVH,hd] hold S sequences. Row i is a query of
// sequence seq[i] at position pos[i]: it attends to that sequence's keys 0..pos[i] (causal), which
// must be in the cache already (0 ≤ pos[i] < max_len). GQA as in attention_forward. Forward only.
// Computed as attention_forward is: rows of one sequence at consecutive positions form tiles of up
// to 64 queries whose scores and outputs are GEMMs over key tiles (online softmax); the threads
// split the (tile, head) pairs, each row being one pair's, so the result does not depend on the
// thread count, and a decoded token (a tile of its own) not on the other sequences of the batch.
void attention_decode(float* out, const float* q, const float* kcache, const float* vcache,
                      const int32_t* seq, const int32_t* pos, int N, int max_len, int H, int KVH,
                      int hd);

// out[n] = silu(gate[n]) · up[n] over n ∈ [0, N)
void swiglu_forward(float* out, const float* gate, const float* up, int64_t N);
void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate,
                     const float* up, int64_t N);

// Softmax cross-entropy over logits[N,V] with targets[N]: losses[N] (may be null) and the
// log-sum-exp lse[N] that backward needs; returns Σ losses, summed in a fixed order.
double crossentropy_forward(float* losses, float* lse, const float* logits, const int32_t* targets,
                            int N, int V);
// dlogits[N,V] = (softmax − onehot) · dscale. Written, not accumulated; may alias logits
// (in place, saving a [N,V] buffer).
void crossentropy_backward(float* dlogits, const float* logits, const float* lse,
                           const int32_t* targets, int N, int V, float dscale);

// y[n] += x[n]
void add_inplace(float* y, const float* x, int64_t n);

// MoE row movement (Backend::gather_rows, combine_rows and their backward).
void gather_rows(float* out, const float* inp, const int32_t* src, int P, int d);
void gather_rows_backward(float* dinp, const float* dout, const int32_t* offsets, const int32_t* pos,
                          int N, int d);
void combine_rows(float* out, const float* y, const float* weight, const int32_t* offsets,
                  const int32_t* pos, int N, int d);
void combine_rows_backward(float* dy, float* dweight, const float* dout, const float* y,
                           const float* weight, const int32_t* offsets, const int32_t* pos, int N,
                           int d);

// MoE router and auxiliary losses (Backend::router_forward ... aux_loss_backward; kernels/router.h;
// router_cpu.cpp, aux_loss_cpu.cpp).
void router_forward(const RouterSpec& spec, const RouterTensors& r, const float* logits,
                    const float* group_logits, int N);
void router_assign(const RouterSpec& spec, const RouteAssignments& a, double* stats,
                   const RouterTensors& r, const int32_t* slot, int N);
void router_backward(const RouterSpec& spec, float* dlogits, float* dgroup_logits, const float* dweight,
                     const RouterTensors& r, const RouteAssignments& a, int N);
void aux_loss_forward(const RouterSpec& spec, const AuxLossSpec& l, double* values, const RouterTensors& r,
                      const RouteAssignments& a, const double* stats, int N);
void aux_loss_backward(const RouterSpec& spec, const AuxLossSpec& l, float* dweight, float* dlogits,
                       float* dgroup_logits, const RouterTensors& r, const RouteAssignments& a,
                       const double* stats, int N, float grad_scale);

// Σ x[i]² in double, over a fixed partition (the same sum for any thread count).
double sum_squares(const float* x, int64_t n);
// Backend::adamw_step.
void adamw_step(float* w, const float* g, float* m, float* v, const std::vector<ParamSegment>& segs,
                const AdamWStep& s);

}  // namespace mohge
