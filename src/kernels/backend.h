// defines: Backend — the runtime compute backend (ggml's ggml_backend is the model): memory,
//          host/device copies, fill, synchronisation and every compute op of the engine, forward
//          and backward; Buffer<T>, an allocation that knows its backend; the backend registry.
// The model, the MoE layer, the loss and the optimizer run only through a Backend&, so CPU and GPU
// implementations live side by side in one process and tests/test_ops.cpp checks every op of
// every backend against the float64 reference. CpuBackend (kernels/cpu_backend.cpp, over the
// kernels of ops.h) is the first implementation and the truth.
//
// Pointers passed to ops are backend memory (from alloc / Buffer). Shapes: N = rows (tokens),
// C/I/O = feature sizes, B/T/H = batch, time, heads, KVH = key/value heads, hd = head dim.
// Backward ops ACCUMULATE (+=) into every gradient they are given (llm.c): a tensor that feeds
// two consumers gets both contributions without extra buffers; callers zero gradients.
// Ops are enqueued in order on the backend's one stream; synchronize() waits for them. Results a
// host needs (loss sums, norms) are backend values read with download(), which synchronises.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "kernels/gemm.h"
#include "kernels/router.h"

namespace mohge {

// One parameter tensor inside a flat parameter buffer, as the optimizer sees it.
struct ParamSegment {
  size_t offset = 0;  // elements from the buffer start
  int64_t numel = 0;
  bool decay = true;  // decoupled weight decay applies
};

// AdamW hyper-parameters of one step (Loshchilov & Hutter; decoupled decay).
struct AdamWStep {
  double lr, beta1, beta2, eps, weight_decay;
  int64_t t;               // 1-based step, for bias correction
  float grad_mult = 1.0f;  // gradients are used × grad_mult (clipping folded into the update)
};

// One product of Backend::matmul_forward_shared: out[N,O] = inp · w[O,I]ᵀ.
struct SharedInputProduct {
  float* out;
  const float* w;
  int O;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;  // "cpu", "cuda"
  // Whether backend pointers may be dereferenced by host code (true for the CPU backend).
  virtual bool host_accessible() const = 0;

  // ---- memory ----
  // bytes of uninitialised memory, 64-byte aligned; throws mohge::Error naming the size on failure.
  virtual void* alloc(size_t bytes) = 0;
  virtual void free(void* p) noexcept = 0;
  virtual void upload(void* dst, const void* host_src, size_t bytes) = 0;    // host -> backend
  virtual void download(void* host_dst, const void* src, size_t bytes) = 0;  // backend -> host (waits)
  virtual void copy(void* dst, const void* src, size_t bytes) = 0;           // backend -> backend
  virtual void fill(float* x, float value, int64_t n) = 0;
  virtual void zero(void* p, size_t bytes) = 0;
  virtual void synchronize() = 0;

  // ---- inference weights ----
  // Declares each tensor (the n floats at w) frozen until clear_inference_weights(w): no backward
  // and no update will touch them. matmul_forward with a weight inside them may then use kernels
  // that training must not (the CPU's small-N matrix–vector kernel, kernels/matvec.h, sums in
  // another order than the GEMM). bf16: the backend also keeps them as bfloat16 (gemm.h's
  // rounding), read by the p = bf16 products with half the bytes. All of a model's tensors in one
  // call: their bf16 copies can share one buffer. Ranges must not overlap. All or nothing: when it
  // throws (out of memory for the copies) none is declared.
  // Default: nothing (a backend without such kernels computes as for training).
  struct WeightRange {
    const float* w;
    size_t n;
  };
  virtual void set_inference_weights(const std::vector<WeightRange>& tensors, bool bf16) {}
  virtual void clear_inference_weights(const float* w) {}
  // Runs step(), one decode step of `rows` token rows through this backend's ops, as one unit: the
  // CPU backend keeps its threads waiting between the ops (kernels/parallel.h, run_as_team) when
  // every product of the step is a matrix–vector one over inference weights, rather than opening
  // a parallel region per product. Default: step().
  virtual void run_decode_step(int rows, const std::function<void()>& step) { step(); }

  // ---- dense ops ----
  // out[N,O] = inp[N,I] · w[O,I]ᵀ (w shaped like torch.nn.Linear); accumulate adds into out.
  // p = bf16: inputs rounded to bfloat16, sums in fp32 (gemm.h).
  virtual void matmul_forward(float* out, const float* inp, const float* w, int N, int I, int O,
                              bool accumulate = false, Precision p = Precision::fp32) = 0;
  // out_j[N,O_j] = inp[N,I] · w_j[O_j,I]ᵀ for count products of one input (q, k and v; an FFN's
  // gate and up): matmul_forward on each, in one call so that a backend may run them as one
  // kernel (the CPU's decode kernel: one parallel region, the input rounded to bf16 once).
  virtual void matmul_forward_shared(const float* inp, const SharedInputProduct* products, int count, int N,
                                     int I, Precision p = Precision::fp32) {
    for (int j = 0; j < count; j++) matmul_forward(products[j].out, inp, products[j].w, N, I, products[j].O, false, p);
  }
  // dinp[N,I] += dout[N,O] · w[O,I];  dw[O,I] += doutᵀ · inp.  Either output may be null.
  virtual void matmul_backward(float* dinp, float* dw, const float* dout, const float* inp,
                               const float* w, int N, int I, int O,
                               Precision p = Precision::fp32) = 0;
  // out[N,C] = wte[tokens[n], :];  dwte[V,C] += scatter of dout[N,C] by token
  virtual void embedding_forward(float* out, const int32_t* tokens, const float* wte, int N, int C) = 0;
  virtual void embedding_backward(float* dwte, const float* dout, const int32_t* tokens, int N, int C) = 0;
  // out[N,C] = inp · rsqrt(mean(inp²) + eps) · w;  rstd[N] saved for backward
  virtual void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* w, int N,
                               int C, float eps) = 0;
  virtual void rmsnorm_backward(float* dinp, float* dw, const float* dout, const float* inp,
                                const float* w, const float* rstd, int N, int C) = 0;
  // Rotary embedding (SPEC §1), rotate-half, in place on x[B,T,H,hd] at positions pos0 + t;
  // inverse = the adjoint rotation (backward).
  virtual void rope_apply(float* x, int B, int T, int H, int hd, float theta, int pos0, bool inverse) = 0;
  // Causal attention with GQA: q[B,T,H,hd], k/v[B,T,KVH,hd] -> out[B,T,H,hd] (query head h reads
  // kv head h / (H/KVH)); lse[B,H,T], each row's log-sum-exp of the scaled scores, is all that
  // backward needs besides out: memory O(T), never T×T (flash attention, ops.h).
  // p = bf16 lets a backend round q, k, v, the probabilities, dout and dS to bfloat16 with fp32
  // sums (FlashAttention-2's precision: the CUDA backend's tensor cores); the CPU computes in
  // fp32 either way.
  virtual void attention_forward(float* out, float* lse, const float* q, const float* k,
                                 const float* v, int B, int T, int H, int KVH, int hd,
                                 Precision p = Precision::fp32) = 0;
  virtual void attention_backward(float* dq, float* dk, float* dv, const float* dout,
                                  const float* out, const float* lse, const float* q,
                                  const float* k, const float* v, int B, int T, int H, int KVH,
                                  int hd, Precision p = Precision::fp32) = 0;
  // Attention of N query rows over a KV cache (decode, prefill): q[N,H,hd] -> out[N,H,hd] over
  // kcache/vcache[S,max_len,KVH,hd]; row i is sequence seq[i] at position pos[i] and attends to
  // that sequence's keys 0..pos[i] (seq, pos: backend int32 [N]). Forward only.
  virtual void attention_decode(float* out, const float* q, const float* kcache,
                                const float* vcache, const int32_t* seq, const int32_t* pos, int N,
                                int max_len, int H, int KVH, int hd) = 0;
  // out[n] = silu(gate[n]) · up[n];  backward accumulates into dgate, dup
  virtual void swiglu_forward(float* out, const float* gate, const float* up, int64_t n) = 0;
  virtual void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate,
                               const float* up, int64_t n) = 0;
  // Softmax cross-entropy over logits[N,V] with targets[N]: losses[N] (may be null), the
  // log-sum-exp lse[N] for backward, and *loss_sum (one backend double) += Σ losses, summed in a
  // fixed order (bit-identical for any thread count: exact resume relies on it).
  virtual void crossentropy_forward(float* losses, float* lse, double* loss_sum,
                                    const float* logits, const int32_t* targets, int N, int V) = 0;
  // dlogits[N,V] = (softmax − onehot) · dscale. Written, not accumulated; may alias logits.
  virtual void crossentropy_backward(float* dlogits, const float* logits, const float* lse,
                                     const int32_t* targets, int N, int V, float dscale) = 0;
  // y[n] += x[n]
  virtual void add_inplace(float* y, const float* x, int64_t n) = 0;

  // ---- mixture-of-experts row movement (dropless dispatch, SPEC §3) ----
  // Permute: out[p, :] = inp[src[p], :] for p < P (rows [N,d] -> [P,d]).
  virtual void gather_rows(float* out, const float* inp, const int32_t* src, int P, int d) = 0;
  // Backward of gather_rows: dinp[src[p], :] += dout[p, :], race-free when rows repeat.
  // CSR form of the inverse map: token t's rows are pos[offsets[t] .. offsets[t+1]).
  virtual void gather_rows_backward(float* dinp, const float* dout, const int32_t* offsets,
                                    const int32_t* pos, int N, int d) = 0;
  // Combine (unpermute): out[t, :] = Σ_{j ∈ [offsets[t], offsets[t+1])} weight[j] · y[pos[j], :]
  // (overwrites out[N,d]); the top-k mixture of the expert outputs.
  virtual void combine_rows(float* out, const float* y, const float* weight, const int32_t* offsets,
                            const int32_t* pos, int N, int d) = 0;
  // Backward of combine_rows: dy[pos[j], :] = weight[j] · dout[t, :] (written) and
  // dweight[j] = <dout[t, :], y[pos[j], :]> (written), for every assignment j of every token t.
  virtual void combine_rows_backward(float* dy, float* dweight, const float* dout, const float* y,
                                     const float* weight, const int32_t* offsets,
                                     const int32_t* pos, int N, int d) = 0;

  // ---- mixture-of-experts router and auxiliary losses (kernels/router.h: rules, shapes) ----
  // Route N tokens: r's per-token outputs from logits[N,E] (and group_logits[N,Ng] for
  // two_level). A token with a non-finite logit gets nsel = −1 and no selection.
  virtual void router_forward(const RouterSpec& s, const RouterTensors& r, const float* logits,
                              const float* group_logits, int N) = 0;
  // The assignments of r in CSR and their send layout (a), and stats[route_stats_size] (written).
  // slot[E]: each expert's slot (backend memory), or null for slot = expert.
  virtual void router_assign(const RouterSpec& s, const RouteAssignments& a, double* stats,
                             const RouterTensors& r, const int32_t* slot, int N) = 0;
  // dweight[A] = dL/dw per assignment -> dlogits[N,E] +=, dgroup_logits[N,Ng] += (two_level).
  virtual void router_backward(const RouterSpec& s, float* dlogits, float* dgroup_logits,
                               const float* dweight, const RouterTensors& r,
                               const RouteAssignments& a, int N) = 0;
  // values[kAuxValues] (written, backend doubles) from stats (route-stats layout).
  virtual void aux_loss_forward(const RouterSpec& s, const AuxLossSpec& l, double* values,
                                const RouterTensors& r, const RouteAssignments& a,
                                const double* stats, int N) = 0;
  // Gradients of grad_scale × total: dweight[A] += (intra-group), dlogits[N,E] += (load balance,
  // P-Penalty, entropy), dgroup_logits[N,Ng] += (group). Run it before router_backward, which
  // carries dweight on to the logits.
  virtual void aux_loss_backward(const RouterSpec& s, const AuxLossSpec& l, float* dweight,
                                 float* dlogits, float* dgroup_logits, const RouterTensors& r,
                                 const RouteAssignments& a, const double* stats, int N,
                                 float grad_scale) = 0;

  // ---- optimizer ----
  // *out = Σ x[i]² over x[n] (one backend double), summed in a fixed order (deterministic).
  virtual void sum_squares(double* out, const float* x, int64_t n) = 0;
  // One AdamW step over the tensors `segs` of the flat buffers w, g, m, v: m, v updated in place,
  // w -= lr·m̂/(√v̂ + eps) + lr·wd·w (decay only where seg.decay).
  virtual void adamw_step(float* w, const float* g, float* m, float* v,
                          const std::vector<ParamSegment>& segs, const AdamWStep& s) = 0;
};

// A typed allocation of n elements on one backend: move-only, freed by its backend.
template <class T>
class Buffer {
 public:
  Buffer() = default;
  Buffer(Backend& be, size_t n) : be_(&be) { reallocate(n), n_ = n; }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  Buffer(Buffer&& o) noexcept { *this = std::move(o); }
  Buffer& operator=(Buffer&& o) noexcept {
    std::swap(be_, o.be_), std::swap(p_, o.p_), std::swap(n_, o.n_), std::swap(cap_, o.cap_);
    return *this;
  }
  ~Buffer() {
    if (p_) be_->free(p_);
  }
  // Grow-only: at least n elements, contents NOT kept when it reallocates. Activation sizes change
  // every step with the batch and the routing; shrinking and regrowing would reallocate (and
  // page-fault) megabytes per layer.
  T* ensure(Backend& be, size_t n) {
    if (be_ != &be && p_) be_->free(p_), p_ = nullptr, cap_ = 0;
    be_ = &be;
    if (n > cap_) reallocate(n + n / 4);
    n_ = n;
    return p_;
  }
  // ensure(be, n), all n elements zero.
  T* zeros(Backend& be, size_t n) {
    ensure(be, n);
    if (n) be.zero(p_, n * sizeof(T));
    return p_;
  }
  T* data() { return p_; }
  const T* data() const { return p_; }
  size_t size() const { return n_; }
  Backend* backend() const { return be_; }
  void upload(const T* host, size_t n, size_t at = 0) { be_->upload(p_ + at, host, n * sizeof(T)); }
  void download(T* host, size_t n, size_t at = 0) const { be_->download(host, p_ + at, n * sizeof(T)); }
  // Host code over backend memory (checkpoints, logits): host_read gives the first n elements, the
  // memory itself on a host-accessible backend, else a copy in `staging` (a download, which waits
  // for the backend's queue; host writes to the copy stay on the host).
  T* host_read(size_t n, std::vector<T>& staging) {
    if (be_->host_accessible()) return p_;
    staging.resize(n);
    if (n) download(staging.data(), n);
    return staging.data();
  }
  const T* host_read(size_t n, std::vector<T>& staging) const {
    return const_cast<Buffer*>(this)->host_read(n, staging);
  }
  std::vector<T> to_host() const {
    std::vector<T> h(n_);
    if (n_) download(h.data(), n_);
    return h;
  }

 private:
  void reallocate(size_t cap) {
    if (p_) be_->free(p_), p_ = nullptr;
    cap_ = cap;
    if (cap) p_ = static_cast<T*>(be_->alloc(cap * sizeof(T)));
  }
  Backend* be_ = nullptr;
  T* p_ = nullptr;
  size_t n_ = 0, cap_ = 0;
};

// ---- registry ----
// Every backend this engine knows, compiled in or not ("cpu", "cuda").
const std::vector<std::string>& backend_names();
// The process-wide backend of that name, or nullptr with *why_not saying why it cannot run here
// ("not compiled in: configure with -DMOHGE_CUDA=ON", "no CUDA device"). Unknown names throw.
Backend* backend_find(const std::string& name, std::string* why_not);
// As backend_find, but a backend that cannot run here throws mohge::Error with the reason.
Backend& backend_get(const std::string& name);
// The CPU backend (always present).
Backend& cpu_backend();

}  // namespace mohge
