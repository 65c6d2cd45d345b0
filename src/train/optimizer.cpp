#include "train/optimizer.h"

#include <omp.h>

#include <cmath>

namespace mohge {

AdamW::AdamW(const ParamTable& params, AdamWConfig cfg) : cfg_(cfg) {
  m.assign((size_t)params.total(), 0.0f);
  v.assign((size_t)params.total(), 0.0f);
  decay_.assign((size_t)params.total(), 0);
  for (auto& p : params.infos())
    std::fill_n(decay_.begin() + (int64_t)p.offset, p.numel, (p.decay || cfg.decay_all) ? 1 : 0);
}

void AdamW::step(ParamTable& params, double lr, int64_t t) {
  const float b1 = (float)cfg_.beta1, b2 = (float)cfg_.beta2, eps = (float)cfg_.eps;
  const float c1 = 1.0f / (1.0f - (float)std::pow(cfg_.beta1, (double)t));
  const float c2 = 1.0f / (1.0f - (float)std::pow(cfg_.beta2, (double)t));
  const float flr = (float)lr, wd = (float)(lr * cfg_.weight_decay);
  float* w = params.all_data();
  const float* g = params.all_grad();
  const int64_t n = params.total();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i++) {
    float mi = m[i] = b1 * m[i] + (1.0f - b1) * g[i];
    float vi = v[i] = b2 * v[i] + (1.0f - b2) * g[i] * g[i];
    // decoupled decay: w ← w − lr·wd·w, independent of the gradient statistics
    w[i] -= flr * (mi * c1) / (std::sqrt(vi * c2) + eps) + (decay_[i] ? wd * w[i] : 0.0f);
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
    for (int64_t i = n * c / chunks; i < n * (c + 1) / chunks; i++) s += (double)g[i] * g[i];
    part[c] = s;
  }
  double s = 0.0;
  for (double p : part) s += p;
  return std::sqrt(s);
}

void grad_scale(float* g, int64_t n, float s) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i++) g[i] *= s;
}

}  // namespace mohge
