// defines: Model — the LLaMA-style decoder (SPEC §1): forward, backward, KV-cache decoding
// Activations needed by backward are kept per layer in LayerActs; the FFN of each layer is an
// Ffn (dense or mixture of experts), so the block never changes when the FFN kind does.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "model/ffn.h"
#include "model/model_config.h"
#include "model/params.h"

namespace mohge {

struct KVCache;

class Model {
 public:
  // Registers and allocates the parameters (zeros) on be; every op of the model runs on be.
  explicit Model(const ModelConfig& cfg, Backend& be = cpu_backend());
  ~Model();
  void init_weights(uint64_t seed) { params.init_weights(seed); }
  // Start of an optimizer step: per-step routing statistics restart (see Ffn::routing).
  void begin_step() {
    for (auto& f : ffn_) f->begin_step();
  }

  // inputs/targets [B,T]. Returns the mean LM cross-entropy (targets may be null: logits only).
  // Logits [B,T,V] stay in logits() until backward overwrites them with their gradient.
  double forward(const int32_t* inputs, const int32_t* targets, int B, int T, int64_t step = 0);
  // Gradient of loss_scale · (LM loss + aux losses) accumulated into params. After forward.
  void backward(float loss_scale);
  const float* logits() const { return logits_.data(); }  // backend memory
  // Sum over layers of the weighted auxiliary losses of the last forward, and each term.
  double aux_loss() const;
  std::map<std::string, double> aux_terms() const;
  // Parameters used per token in the last forward: total, and the FFN/expert part.
  double active_params_per_token() const;
  double ffn_active_params_per_token() const;
  const Ffn& ffn(int layer) const { return *ffn_[layer]; }

  // Incremental decoding: feeds one token at cache position, writes logits [V].
  void decode_step(KVCache& cache, int32_t token, float* logits_out);

  ModelConfig cfg;
  ParamTable params;
  Backend& backend() const { return be_; }

 private:
  struct LayerIds { int ln1, q, k, v, o, ln2; };
  struct LayerActs {
    Buffer<float> x, ln1, rstd1, q, k, v, lse, atty, h, ln2, rstd2;
  };
  void ensure_acts(int B, int T);
  int B_ = 0, T_ = 0, cap_B_ = 0, cap_T_ = 0;
  int embed_id_ = -1, norm_id_ = -1, lm_id_ = -1;
  std::vector<LayerIds> layer_ids_;
  std::vector<std::unique_ptr<Ffn>> ffn_;
  Backend& be_;
  std::vector<LayerActs> acts_;
  Buffer<float> resid_, lnf_, rstdf_, logits_, lse_;
  Buffer<int32_t> inputs_, targets_;
  Buffer<double> loss_sum_;
  bool has_targets_ = false;
  int64_t step_ = 0;
  // backward scratch
  Buffer<float> dres_, dln_, dq_, dk_, dv_, datty_;
};

// Key/value cache for one sequence: k,v [L, max_T, KVH·hd].
struct KVCache {
  KVCache(const ModelConfig& c, int max_T);
  void reset() { pos = 0; }
  int max_T, pos = 0;
  std::vector<float> k, v;
};

}  // namespace mohge
