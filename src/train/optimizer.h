// defines: AdamW (decoupled weight decay), lr_schedule (linear warmup + cosine), grad_global_norm
#pragma once
#include <vector>

#include "model/params.h"

namespace mohge {

struct AdamWConfig {
  double beta1 = 0.9, beta2 = 0.95, eps = 1e-8, weight_decay = 0.1;
  bool decay_all = false;  // also decay norms and embeddings (ParamInfo::decay == false)
};

class AdamW {
 public:
  AdamW(const ParamTable& params, AdamWConfig cfg);
  // One update with learning rate lr; t = 1-based step count for bias correction. Gradients are
  // used multiplied by grad_mult (gradient clipping folded into the update: no extra pass).
  void step(ParamTable& params, double lr, int64_t t, float grad_mult = 1.0f);
  std::vector<float> m, v;  // moments, laid out like the parameter buffer
 private:
  AdamWConfig cfg_;
};

// lr at 0-based step: linear warmup over `warmup` steps, then cosine from lr to min_lr at `total`.
double lr_schedule(int64_t step, int64_t total, int64_t warmup, double lr, double min_lr);

// sqrt(Σ g²) over all gradients, summed in a fixed order (deterministic for a thread count).
double grad_global_norm(const float* g, int64_t n);
// The factor that scales a gradient of norm `norm` down to `clip` (1 when clip <= 0 or norm <= clip).
float grad_clip_factor(double norm, double clip);

}  // namespace mohge
