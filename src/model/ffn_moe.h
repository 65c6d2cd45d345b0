// defines: MoeFfn — a mixture-of-experts FFN (moe / hmoe / mohge) with dropless dispatch
// Forward: router logits (BLAS) -> routing (moe/router.h) -> tokens permuted so each expert's
// rows are contiguous -> one SwiGLU GEMM chain per expert on exactly its rows (no padding to the
// largest width, no per-token loops) -> outputs scattered back weighted by their gates.
// Expert activations are packed by expert, so their size follows the tokens actually routed.
#pragma once
#include <vector>

#include "model/ffn.h"
#include "model/ffn_dense.h"
#include "moe/aux_loss.h"
#include "moe/router.h"

namespace mohge {

class MoeFfn : public Ffn {
 public:
  MoeFfn(const ModelConfig& c, ParamTable& params, const std::string& prefix);
  void forward(float* out, const float* inp, int N, int64_t step) override;
  void backward(float* dinp, const float* dout, const float* inp, int N, float aux_scale) override;
  double aux_loss() const override { return aux_total_; }
  void aux_terms(std::map<std::string, double>& sum) const override;
  double active_params_per_token() const override;
  void begin_step() override { step_stats_.reset(m_); }
  std::optional<FfnRouting> routing() const override { return FfnRouting{m_, routing_, step_stats_}; }

 private:
  bool experts_in_parallel() const;
  const BalanceStats* global_stats() const { return m_.global_batch_stats ? &step_stats_ : nullptr; }
  ParamTable& params_;
  MoeConfig m_;
  Precision prec_;  // of the expert matmuls; the router is always fp32
  int d_, E_, Ng_;
  int gate_id_ = -1, group_gate_id_ = -1;
  std::vector<SwigluIds> experts_;
  SwigluIds shared_{};
  int64_t step_ = 0;
  // routing of the last forward
  Buffer<float> logits_, group_logits_;
  Routing routing_;
  RouterCache cache_;
  BalanceStats step_stats_;
  // dispatch: assignments sorted by expert; pos_[j] = row of assignment j in the packed layout
  std::vector<int> expert_offsets_, pos_, row_token_;
  std::vector<int> expert_order_;  // experts by descending rows × width (scheduling order)
  std::vector<size_t> act_offsets_;  // [E+1] offsets of each expert's [n_e, W_e] activations
  Buffer<int32_t> dev_offsets_, dev_pos_, dev_row_token_;  // the routing on the backend
  Buffer<float> dev_weight_;
  Buffer<float> xe_, ye_, g_, u_, a_;
  Buffer<float> sg_, su_, sa_;  // shared expert activations
  // aux losses of the last forward
  double aux_total_ = 0.0;
  std::map<std::string, double> aux_terms_;
  // backward scratch
  Buffer<float> dye_, dxe_, dweight_, dlogits_, dgroup_logits_, scratch_;
};

}  // namespace mohge
