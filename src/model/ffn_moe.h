// defines: MoeFfn — a mixture-of-experts FFN (moe / hmoe / mohge) with dropless dispatch
// One layer on one expert-parallel rank (moe/expert_parallel.h), in four stages:
//   router:     logits (fp32 GEMM) -> routing (moe/router.h) over this rank's tokens, all E experts,
//               and the send layout: assignments sorted by slot (owning rank, then expert; stable in
//               token order), all on the backend; the host reads back only the per-expert and
//               per-group counts (the layer's one wait for the backend)
//   dispatch:   rows gathered into that send layout, then exchanged (moe/dispatcher.h)
//   experts:    the experts this rank owns (model/moe_experts.h) on exactly their received rows
//   combine:    outputs exchanged back, then out[t] = Σ_j w_j · y_j (+ the shared expert)
// Backward runs the same stages in reverse. Router weights and the shared expert are on every rank;
// the auxiliary losses (backend values until aux_loss() reads them) use this rank's routing (over
// all E experts), and the step statistics too unless global_batch_stats sums them over the batch
// group. The per-token Routing reaches the host only when routing()->last() asks for it. With one
// rank (the default) the exchanges move nothing and the layer is the single-process one.
#pragma once
#include <memory>
#include <vector>

#include "core/collective.h"
#include "model/ffn.h"
#include "model/ffn_dense.h"
#include "model/moe_experts.h"
#include "moe/aux_loss.h"
#include "moe/dispatcher.h"
#include "moe/expert_parallel.h"
#include "moe/router.h"

namespace mohge {

class MoeFfn : public Ffn {
 public:
  // Registers the router, the shared expert and the experts c.expert_parallel gives this rank.
  // ep_group: the expert-parallel ranks' communicator, required when c.expert_parallel.size > 1.
  // batch_group: the ranks sharing each global micro-batch (data parallel); with
  // moe.global_batch_stats the balance counts are summed over it, so they do not depend on how
  // many ranks share the batch. Null: this rank's tokens are the whole batch.
  MoeFfn(const ModelConfig& c, ParamTable& params, const std::string& prefix, Collective* ep_group = nullptr,
         Collective* batch_group = nullptr);
  void forward(float* out, const float* inp, int N, int64_t step, Mode mode) override;
  void backward(float* dinp, const float* dout, const float* inp, int N, float aux_scale) override;
  double aux_loss() const override;
  void aux_terms(std::map<std::string, double>& sum) const override;
  double active_params_per_token() const override;
  void begin_step() override { step_stats_.reset(m_), step_expert_load_ = 0; }
  std::optional<FfnRouting> routing() const override;
  const ExpertSlots& slots() const { return slots_; }
  const MoeExperts& experts() const { return experts_; }  // the experts this rank owns

 private:
  void route(const float* inp, int N);
  void route_backward(float* dinp, const float* inp, int N, float aux_scale);
  const double* loss_stats();
  const AuxLossValues* aux_values() const;  // of the last train forward (downloaded once), else null
  const Routing& last_routing() const;
  ParamTable& params_;
  MoeConfig m_;
  Precision prec_;  // of the expert matmuls; the router is always fp32
  int d_, E_, Ng_;
  int64_t step_ = 0;
  // router
  int gate_id_ = -1, group_gate_id_ = -1;
  RouterSpec spec_;
  AuxLossParams aux_params_;
  Buffer<float> logits_, group_logits_, dlogits_, dgroup_logits_;
  RouterCache cache_;                  // the routing and its send layout on the backend
  std::vector<int> tokens_per_expert_, tokens_per_group_;  // its counts (from cache_.host_stats)
  mutable Routing routing_;            // its per-token copy on the host, built by last_routing()
  mutable bool routing_current_ = false;
  BalanceStats step_stats_;
  Buffer<double> loss_stats_;          // the step's counts on the backend (global_batch_stats)
  Buffer<double> aux_values_;          // [kAuxValues] of the last train forward
  bool aux_pending_ = false;           // aux_values_ holds values not yet read
  mutable std::optional<AuxLossValues> aux_;
  Collective* batch_group_ = nullptr;
  double step_expert_load_ = 0;  // FfnRouting::step_expert_load
  // dispatch: send_rows_ [E] rows per slot; slot_ [E] each expert's slot, on the backend
  ExpertSlots slots_;
  Buffer<int32_t> slot_;
  std::unique_ptr<Dispatcher> dispatcher_;
  std::vector<int> send_rows_;
  Buffer<float> xs_;                      // [S,d] rows in send order
  const float* xe_ = nullptr;             // [R,d] rows received for my experts (dispatch result)
  Buffer<float> ye_, dxe_;                // [R,d] my experts' outputs, input gradients
  const float* ys_ = nullptr;             // [S,d] outputs back in send order (combine result)
  Buffer<float> dys_, dweight_;           // [S,d] output gradients in send order; [A] dL/dw
  // experts
  MoeExperts experts_;
  SwigluIds shared_{};
  Buffer<float> sg_, su_, sa_, scratch_;  // shared expert activations; backward scratch
};

}  // namespace mohge
