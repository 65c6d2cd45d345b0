#include "train/optimizer.h"

#include <omp.h>

#include <cmath>

namespace mohge {

AdamW::AdamW(const ParamTable& params, AdamWConfig cfg) : cfg_(cfg) {
  m.assign((size_t)params.total(), 0.0f);
  v.assign((size_t)params.total(), 0.0f);
}

void AdamW::step(ParamTable& params, double lr, int64_t t, float grad_mult) {
  const float b1 = (float)cfg_.beta1, b2 = (float)cfg_.beta2, eps = (float)cfg_.eps;
  const float c1 = 1.0f / (1.0f - (float)std::pow(cfg_.beta1, (double)t));
  const float c2 = 1.0f / (1.0f - (float)std::pow(cfg_.beta2, (double)t));
  const float flr = (float)lr;
  float* wall = params.all_data();
  const float* gall = params.all_grad();
  // Tensor by tensor, so the decay flag is a constant of each loop; the threads split every
  // tensor and never wait for each other between tensors (nowait).
#pragma omp parallel
  for (const ParamInfo& p : params.infos()) {
    const float wd = (p.decay || cfg_.decay_all) ? (float)(lr * cfg_.weight_decay) : 0.0f;
    float *w = wall + p.offset, *mm = m.data() + p.offset, *vv = v.data() + p.offset;
    const float* g = gall + p.offset;
#pragma omp for schedule(static) nowait
    for (int64_t i = 0; i < p.numel; i++) {
      const float gi = g[i] * grad_mult;
      float mi = mm[i] = b1 * mm[i] + (1.0f - b1) * gi;
      float vi = vv[i] = b2 * vv[i] + (1.0f - b2) * gi * gi;
      // decoupled decay: w ← w − lr·wd·w, independent of the gradient statistics
      w[i] -= flr * (mi * c1) / (std::sqrt(vi * c2) + eps) + wd * w[i];
    }
  }
}

double lr_schedule(int64_t step, int64_t total, int64_t warmup, double lr, double min_lr) {
  if (step < warmup) return lr * (double)(step + 1) / (double)warmup;
  if (total <= warmup) return lr;
  double progress = std::min(1.0, (double)(step - warmup) / (double)(total - warmup));
  return min_lr + 0.5 * (lr - min_lr) * (1.0 + std::cos(M_PI * progress));
}

double grad_global_norm(const float* g, int64_t n) {
  const int chunks = 64;  // fixed partition: the sum order does not depend on the thread count
  double part[chunks] = {};
#pragma omp parallel for schedule(static)
  for (int c = 0; c < chunks; c++) {
    double s = 0.0;
#pragma omp simd reduction(+ : s)  // vector lanes in a fixed order: still deterministic
    for (int64_t i = n * c / chunks; i < n * (c + 1) / chunks; i++) s += (double)g[i] * g[i];
    part[c] = s;
  }
  double s = 0.0;
  for (double p : part) s += p;
  return std::sqrt(s);
}

float grad_clip_factor(double norm, double clip) {
  return clip > 0 && norm > clip ? (float)(clip / norm) : 1.0f;
}

}  // namespace mohge
