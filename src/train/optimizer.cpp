#include "train/optimizer.h"

#include <algorithm>
#include <cmath>

namespace mohge {

AdamW::AdamW(const ParamTable& params, AdamWConfig cfg, std::vector<ParamRange> owned)
    : cfg_(cfg), total_(params.total()) {
  if (owned.empty()) owned = {{0, total_}};
  const std::vector<ParamSegment> segs = params.segments(cfg.decay_all);
  int64_t at = 0;
  for (const ParamRange& r : owned) {
    Part part{r, at, {}};
    for (const ParamSegment& s : segs) {  // the piece of each tensor inside the range
      const int64_t lo = std::max<int64_t>(r.begin, (int64_t)s.offset);
      const int64_t hi = std::min<int64_t>(r.end, (int64_t)s.offset + s.numel);
      if (lo < hi) part.segs.push_back({(size_t)(lo - r.begin), hi - lo, s.decay});
    }
    at += r.end - r.begin;
    parts_.push_back(std::move(part));
  }
  m.zeros(params.backend(), (size_t)at);
  v.zeros(params.backend(), (size_t)at);
}

void AdamW::step(ParamTable& params, double lr, int64_t t, float grad_mult) {
  const AdamWStep s{lr, cfg_.beta1, cfg_.beta2, cfg_.eps, cfg_.weight_decay, t, grad_mult};
  for (const Part& p : parts_)
    params.backend().adamw_step(params.all_data() + p.range.begin, params.all_grad() + p.range.begin,
                                m.data() + p.at, v.data() + p.at, p.segs, s);
}

void AdamW::load_moments(const float* m_full, const float* v_full) {
  for (const Part& p : parts_) {
    const size_t n = (size_t)(p.range.end - p.range.begin);
    m.upload(m_full + p.range.begin, n, (size_t)p.at);
    v.upload(v_full + p.range.begin, n, (size_t)p.at);
  }
}

void AdamW::store_moments(float* m_full, float* v_full) const {
  for (const Part& p : parts_) {
    const size_t n = (size_t)(p.range.end - p.range.begin);
    m.download(m_full + p.range.begin, n, (size_t)p.at);
    v.download(v_full + p.range.begin, n, (size_t)p.at);
  }
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
