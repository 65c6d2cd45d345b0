// defines: MoeExperts — the routed experts of one MoE layer that this process owns
// Each is a SwiGLU FFN registered under its global name {prefix}.experts.{e}.* (the same names
// whatever the expert-parallel split, so checkpoints do not depend on it). Rows arrive packed by
// expert (dispatcher.h): one GEMM chain per expert on exactly its rows (dropless, no padding to the
// largest width, no per-token loops); activations are packed the same way, so their size follows
// the rows actually routed.
#pragma once
#include <string>
#include <vector>

#include "kernels/backend.h"
#include "model/ffn_dense.h"
#include "model/params.h"

namespace mohge {

class MoeExperts {
 public:
  // ids: the global expert ids owned, in the order their rows arrive; widths: [E] every expert's
  // width. std / out_std: init of the input / output projections.
  MoeExperts(ParamTable& params, const std::string& prefix, std::vector<int> ids, const std::vector<int>& widths,
             int d, float std, float out_std, Precision p);
  // y[R,d] = expert_i(x[R,d]) where rows[i] consecutive rows belong to owned expert i (Σ rows = R).
  // Keeps the activations (and rows) for backward.
  void forward(float* y, const float* x, const std::vector<int>& rows);
  // dx[R,d] = ∂L/∂x (written) for upstream dy[R,d], given the x of the last forward; weight
  // gradients accumulate. scratch: scratch_floats() floats. Pointers are the table's backend's.
  void backward(float* dx, const float* dy, const float* x, float* scratch);
  size_t scratch_floats() const { return 3 * act_offsets_.back(); }
  const std::vector<int>& ids() const { return ids_; }  // global ids owned

 private:
  ParamTable& params_;
  int d_;
  Precision prec_;
  std::vector<int> ids_, widths_;  // [L] owned experts and their widths
  std::vector<SwigluIds> weights_;
  // the last forward
  std::vector<int> row_offsets_;     // [L+1] first row of each expert
  std::vector<size_t> act_offsets_;  // [L+1] offsets of each expert's [n_i, W_i] activations
  std::vector<int> order_;           // experts by descending rows × width (scheduling order)
  Buffer<float> g_, u_, a_;
};

}  // namespace mohge
