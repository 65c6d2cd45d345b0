// defines: AdamW (decoupled weight decay), lr_schedule (linear warmup + cosine), grad_global_norm
#pragma once
#include <vector>

#include "model/params.h"

namespace mohge {

struct AdamWConfig {
  double beta1 = 0.9, beta2 = 0.95, eps = 1e-8, weight_decay = 0.1;
  bool decay_all = false;  // also decay norms and embeddings (ParamInfo::decay == false)
};

// A range [begin, end) of the parameter buffer, in floats (padding included).
struct ParamRange {
  int64_t begin = 0, end = 0;
};

// The optimizer state lives on the parameters' backend; the update is Backend::adamw_step.
// It updates the `owned` ranges of the parameter buffer and keeps moments for them alone, end to
// end in range order: with ZeRO-1 each rank owns its shards (GradientSync::owned, issue 9); by
// default one range, the whole buffer, so m and v are laid out like the parameter buffer.
class AdamW {
 public:
  AdamW(const ParamTable& params, AdamWConfig cfg, std::vector<ParamRange> owned = {});
  // One update of the owned ranges with learning rate lr; t = 1-based step count for bias
  // correction. Gradients are used multiplied by grad_mult (gradient clipping folded into the
  // update: no extra pass).
  void step(ParamTable& params, double lr, int64_t t, float grad_mult = 1.0f);
  // The owned moments from / into host arrays laid out like the parameter buffer ([params.total()]
  // each; store leaves the ranges it does not own as they were): checkpoints hold whole moments.
  void load_moments(const float* m_full, const float* v_full);
  void store_moments(float* m_full, float* v_full) const;
  bool whole() const { return m.size() == (size_t)total_; }  // owns the whole buffer
  const AdamWConfig& config() const { return cfg_; }
  int64_t state_bytes() const { return (int64_t)(m.size() + v.size()) * (int64_t)sizeof(float); }
  Buffer<float> m, v;  // moments of the owned ranges, end to end (zero at start)

 private:
  struct Part {
    ParamRange range;
    int64_t at;                       // where its moments start in m and v
    std::vector<ParamSegment> segs;   // its tensors' pieces, offsets from range.begin
  };
  AdamWConfig cfg_;
  int64_t total_;
  std::vector<Part> parts_;
};

// lr at 0-based step: linear warmup over `warmup` steps, then cosine from lr to min_lr at `total`.
double lr_schedule(int64_t step, int64_t total, int64_t warmup, double lr, double min_lr);

// sqrt(Σ g²) over g[n] on be (the gradient buffer), summed in a fixed order (deterministic). Reads
// the value back to the host: the step logs it and derives the clip factor from it.
double grad_global_norm(Backend& be, const float* g, int64_t n);
// The factor that scales a gradient of norm `norm` down to `clip` (1 when clip <= 0 or norm <= clip).
float grad_clip_factor(double norm, double clip);

}  // namespace mohge
