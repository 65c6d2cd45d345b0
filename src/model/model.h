// defines: Model — the LLaMA-style decoder (SPEC §1): weights, forward, backward, KV-cache decoding
// The Model holds the configuration and the weights (+ their gradients); every pass writes only
// into a Context (model/context.h): activations, KV cache. One block implementation serves the
// training forward, prefill and batched decoding; the FFN of each layer is an Ffn (dense or
// mixture of experts), so the block never changes when the FFN kind does.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "model/context.h"
#include "model/ffn.h"
#include "model/model_config.h"
#include "model/params.h"

namespace mohge {

class Model {
 public:
  // Registers and allocates the parameters (zeros, and their gradients) on be; every op of the
  // model runs on be. groups: this rank's place in a parallel job (make_ffn); null for one process.
  // allocate = false: registered only, for the caller to allocate or adopt (model_load_inference).
  explicit Model(const ModelConfig& cfg, Backend& be = cpu_backend(), const ParallelGroups* groups = nullptr,
                 bool allocate = true);
  ~Model();
  void init_weights(uint64_t seed) { params.init_weights(seed); }
  // Inference from now on (generate, serve): the weights are frozen on the backend, which may
  // then run decode's products through its inference kernels, with bfloat16 weights when the
  // matmul precision is bf16 (ParamTable::freeze). No backward or update afterwards.
  void freeze_for_inference() { params.freeze(cfg.matmul_precision == Precision::bf16); }
  // Start of an optimizer step: per-step routing statistics restart (see Ffn::routing).
  void begin_step() {
    for (auto& f : ffn_) f->begin_step();
  }

  // inputs/targets [B,T] through a train or eval context. Returns the mean LM cross-entropy
  // (targets may be null: logits only). Logits [B,T,V] stay in ctx.logits() (train mode: until
  // backward overwrites them with their gradient).
  double forward(Context& ctx, const int32_t* inputs, const int32_t* targets, int B, int T,
                 int64_t step = 0) const;
  // Gradient of loss_scale · (LM loss + aux losses) accumulated into params. After a train-mode
  // forward with targets of the same context.
  void backward(Context& ctx, float loss_scale);
  // Prefill and decoding through a decode context: row i appends token tokens[i] to sequence
  // seqs[i] at its next position; the rows of one sequence are one consecutive run (a prompt, or
  // one token per running sequence when decoding). Their keys and values join the cache; then
  // ctx.seq_logits(s) holds the logits after the last row of each sequence s of the batch.
  // Errors: a token outside the vocabulary, a sequence outside the cache or in two runs, a full
  // sequence (nothing is changed then).
  void decode(Context& ctx, const int32_t* tokens, const int32_t* seqs, int N) const;

  const Ffn& ffn(int layer) const { return *ffn_[layer]; }
  // Parameters outside the FFNs that every token uses (all but the embedding table, plus its row).
  double dense_params_per_token() const;

  ModelConfig cfg;
  ParamTable params;
  Backend& backend() const { return be_; }

 private:
  struct LayerIds { int ln1, q, k, v, o, ln2; };
  // One transformer block on the N rows of ctx.acts(l).x -> out[N,d] (may be that x outside
  // train mode). Attention: train/eval rows are B causal sequences of T; decode rows are placed
  // by ctx's runs and read and extend its KV cache.
  void block_forward(Context& ctx, int l, float* out, int N) const;
  // Final norm and LM head of rows x[R,d] -> ctx.logits_ [R,V].
  void head_forward(Context& ctx, const float* x, int R) const;
  void check_context(const Context& ctx) const;
  int embed_id_ = -1, norm_id_ = -1, lm_id_ = -1;
  std::vector<LayerIds> layer_ids_;
  std::vector<std::unique_ptr<Ffn>> ffn_;
  Backend& be_;
};

}  // namespace mohge
