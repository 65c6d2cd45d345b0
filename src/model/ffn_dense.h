// defines: SwigluWeights/swiglu_ffn_forward/backward (one SwiGLU FFN on N rows), DenseFfn
// The SwiGLU functions are shared by the dense FFN, every expert and the shared expert.
#pragma once
#include <vector>

#include "kernels/backend.h"
#include "model/ffn.h"

namespace mohge {

struct SwigluWeights {
  const float* gate;  // [W, d]
  const float* up;    // [W, d]
  const float* down;  // [d, W]
};
struct SwigluGrads {
  float* gate;
  float* up;
  float* down;
};

// out[N,d] = down · (silu(gate·x) ⊙ up·x) (+= out when accumulate) on be; p: the matmul precision.
// Saves g[N,W], u[N,W], a[N,W] (gate pre-activation, up, and their SwiGLU product).
void swiglu_ffn_forward(Backend& be, float* out, float* g, float* u, float* a, const float* x,
                        const SwigluWeights& w, int N, int d, int W, bool accumulate, Precision p);
// dx[N,d] += ∂L/∂x; grads accumulate. scratch needs 3·N·W floats of be.
void swiglu_ffn_backward(Backend& be, float* dx, const SwigluGrads& dw, const float* dout,
                         const float* x, const float* g, const float* u, const float* a,
                         const SwigluWeights& w, int N, int d, int W, float* scratch, Precision p);

// Registers {prefix}.{gate,up,down}_proj.weight for width W; returns the ids.
struct SwigluIds {
  int gate, up, down;
  SwigluWeights weights(ParamTable& p) const { return {p.data(gate), p.data(up), p.data(down)}; }
  SwigluGrads grads(ParamTable& p) const { return {p.grad(gate), p.grad(up), p.grad(down)}; }
};
SwigluIds swiglu_register(ParamTable& p, const std::string& prefix, int d, int W, float std,
                          float out_std);

class DenseFfn : public Ffn {
 public:
  DenseFfn(const ModelConfig& c, int width, ParamTable& params, const std::string& prefix);
  void forward(float* out, const float* inp, int N, int64_t step, Mode mode) override;
  void backward(float* dinp, const float* dout, const float* inp, int N, float aux_scale) override;
  double active_params_per_token() const override { return 3.0 * d_ * W_; }

 private:
  ParamTable& params_;
  SwigluIds ids_;
  int d_, W_;
  Precision prec_;
  Buffer<float> g_, u_, a_, scratch_;
};

}  // namespace mohge
