// defines: Ffn — the feed-forward interface of a transformer block; make_ffn picks the kind
// The block calls forward/backward on [N, d] rows and never knows whether it holds a dense
// SwiGLU or a mixture of experts. Each FFN registers its tensors in the model's ParamTable and
// keeps whatever its backward needs (activations, routing) from the last training forward.
#pragma once
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/collective.h"
#include "model/mode.h"
#include "model/model_config.h"
#include "model/params.h"
#include "moe/aux_loss.h"
#include "moe/router.h"

namespace mohge {

// What a mixture-of-experts FFN tells the routing log and the analysis (views into the layer,
// valid until its next forward / begin_step).
struct FfnRouting {
  const MoeConfig& config;
  // per-token routing of the N tokens of the last forward, copied to the host on the first call
  // (a download on a device backend; step statistics need only `step`)
  std::function<const Routing&()> last;
  // counts of that forward, on the host already: n_e [E], n_g [Ng] (two-level; else empty)
  const std::vector<int>& last_tokens_per_expert;
  const std::vector<int>& last_tokens_per_group;
  const BalanceStats& step;   // routing counts of every forward since begin_step
  // Σ over the experts this rank owns of rows processed × width, every forward since begin_step:
  // the FLOP-proportional load this rank's experts actually carried (expert parallel, issue 9)
  double step_expert_load = 0;
};

class Ffn {
 public:
  virtual ~Ffn() = default;
  // out[N,d] = FFN(inp[N,d]). step: the optimizer step (some aux losses start late). Auxiliary
  // losses and step statistics only in Mode::train.
  virtual void forward(float* out, const float* inp, int N, int64_t step, Mode mode) = 0;
  // dinp[N,d] += ∂L/∂inp for upstream dout[N,d], given the inp of the last forward; parameter
  // gradients accumulate. aux_scale multiplies the auxiliary-loss gradients (the same scale the
  // LM loss gradient got, e.g. 1/grad_accum).
  virtual void backward(float* dinp, const float* dout, const float* inp, int N,
                        float aux_scale) = 0;
  // Weighted sum of the auxiliary losses of the last train forward (0 for dense), and each term.
  virtual double aux_loss() const { return 0.0; }
  virtual void aux_terms(std::map<std::string, double>& sum) const {}
  // Start of an optimizer step: per-step statistics (routing counts) restart.
  virtual void begin_step() {}
  // Mean number of parameters used per token by the last forward (for routing metrics).
  virtual double active_params_per_token() const = 0;
  // The layer's routing; nullopt for a dense FFN.
  virtual std::optional<FfnRouting> routing() const { return std::nullopt; }
};

// prefix: "model.layers.{l}.mlp". groups: the job's ranks (null: one process), for a MoE layer's
// token exchange (groups->expert) and global balance counts (groups->world).
std::unique_ptr<Ffn> make_ffn(const ModelConfig& c, int layer, ParamTable& params,
                              const std::string& prefix, const ParallelGroups* groups = nullptr);

}  // namespace mohge
