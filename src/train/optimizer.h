// defines: AdamW (decoupled weight decay), lr_schedule (linear warmup + cosine), grad_global_norm
#pragma once
#include <vector>

#include "model/params.h"

namespace mohge {

struct AdamWConfig {
  double beta1 = 0.9, beta2 = 0.95, eps = 1e-8, weight_decay = 0.1;
  bool decay_all = false;  // also decay norms and embeddings (ParamInfo::decay == false)
};

// The optimizer state lives on the parameters' backend; the update is Backend::adamw_step.
class AdamW {
 public:
  AdamW(const ParamTable& params, AdamWConfig cfg);
  // One update with learning rate lr; t = 1-based step count for bias correction. Gradients are
  // used multiplied by grad_mult (gradient clipping folded into the update: no extra pass).
  void step(ParamTable& params, double lr, int64_t t, float grad_mult = 1.0f);
  Buffer<float> m, v;  // moments, laid out like the parameter buffer (zero at start)
 private:
  AdamWConfig cfg_;
  std::vector<ParamSegment> segs_;
};

// lr at 0-based step: linear warmup over `warmup` steps, then cosine from lr to min_lr at `total`.
double lr_schedule(int64_t step, int64_t total, int64_t warmup, double lr, double min_lr);

// sqrt(Σ g²) over g[n] on be (the gradient buffer), summed in a fixed order (deterministic). Reads
// the value back to the host: the step logs it and derives the clip factor from it.
double grad_global_norm(Backend& be, const float* g, int64_t n);
// The factor that scales a gradient of norm `norm` down to `clip` (1 when clip <= 0 or norm <= clip).
float grad_clip_factor(double norm, double clip);

}  // namespace mohge
