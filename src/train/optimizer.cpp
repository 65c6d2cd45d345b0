#include "train/optimizer.h"

#include <cmath>

namespace mohge {

AdamW::AdamW(const ParamTable& params, AdamWConfig cfg) : cfg_(cfg), segs_(params.segments(cfg.decay_all)) {
  m.zeros(params.backend(), (size_t)params.total());
  v.zeros(params.backend(), (size_t)params.total());
}

void AdamW::step(ParamTable& params, double lr, int64_t t, float grad_mult) {
  params.backend().adamw_step(params.all_data(), params.all_grad(), m.data(), v.data(), segs_,
                              {lr, cfg_.beta1, cfg_.beta2, cfg_.eps, cfg_.weight_decay, t, grad_mult});
}

double lr_schedule(int64_t step, int64_t total, int64_t warmup, double lr, double min_lr) {
  if (step < warmup) return lr * (double)(step + 1) / (double)warmup;
  if (total <= warmup) return lr;
  double progress = std::min(1.0, (double)(step - warmup) / (double)(total - warmup));
  return min_lr + 0.5 * (lr - min_lr) * (1.0 + std::cos(M_PI * progress));
}

double grad_global_norm(Backend& be, const float* g, int64_t n) {
  Buffer<double> sum(be, 1);
  be.sum_squares(sum.data(), g, n);
  return std::sqrt(sum.to_host()[0]);
}

float grad_clip_factor(double norm, double clip) {
  return clip > 0 && norm > clip ? (float)(clip / norm) : 1.0f;
}

}  // namespace mohge
