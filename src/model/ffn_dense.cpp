#include "model/ffn_dense.h"

#include <cmath>


namespace mohge {

void swiglu_ffn_forward(Backend& be, float* out, float* g, float* u, float* a, const float* x,
                        const SwigluWeights& w, int N, int d, int W, bool accumulate, Precision p) {
  const SharedInputProduct gate_up[] = {{g, w.gate, W}, {u, w.up, W}};
  be.matmul_forward_shared(x, gate_up, 2, N, d, p);
  be.swiglu_forward(a, g, u, (int64_t)N * W);
  be.matmul_forward(out, a, w.down, N, W, d, accumulate, p);
}

void swiglu_ffn_backward(Backend& be, float* dx, const SwigluGrads& dw, const float* dout,
                         const float* x, const float* g, const float* u, const float* a,
                         const SwigluWeights& w, int N, int d, int W, float* scratch, Precision p) {
  const int64_t nw = (int64_t)N * W;
  float *da = scratch, *dg = scratch + nw, *du = scratch + 2 * nw;
  be.zero(scratch, 3 * nw * sizeof(float));
  be.matmul_backward(da, dw.down, dout, a, w.down, N, W, d, p);
  be.swiglu_backward(dg, du, da, g, u, nw);
  be.matmul_backward(dx, dw.gate, dg, x, w.gate, N, d, W, p);
  be.matmul_backward(dx, dw.up, du, x, w.up, N, d, W, p);
}

SwigluIds swiglu_register(ParamTable& p, const std::string& prefix, int d, int W, float std,
                          float out_std) {
  return {p.add(prefix + ".gate_proj.weight", {W, d}, ParamInit::normal, std, true),
          p.add(prefix + ".up_proj.weight", {W, d}, ParamInit::normal, std, true),
          p.add(prefix + ".down_proj.weight", {d, W}, ParamInit::normal, out_std, true)};
}

DenseFfn::DenseFfn(const ModelConfig& c, int width, ParamTable& params, const std::string& prefix)
    : params_(params), d_(c.hidden_size), W_(width), prec_(c.matmul_precision) {
  float std = (float)c.init_std, out_std = std / std::sqrt(2.0f * c.num_layers);
  ids_ = swiglu_register(params, prefix, d_, W_, std, out_std);
}

void DenseFfn::forward(float* out, const float* inp, int N, int64_t, Mode) {
  Backend& be = params_.backend();
  size_t n = (size_t)N * W_;
  g_.ensure(be, n), u_.ensure(be, n), a_.ensure(be, n);
  swiglu_ffn_forward(be, out, g_.data(), u_.data(), a_.data(), inp, ids_.weights(params_), N, d_,
                     W_, false, prec_);
}

void DenseFfn::backward(float* dinp, const float* dout, const float* inp, int N, float) {
  Backend& be = params_.backend();
  scratch_.ensure(be, 3 * (size_t)N * W_);
  swiglu_ffn_backward(be, dinp, ids_.grads(params_), dout, inp, g_.data(), u_.data(), a_.data(),
                      ids_.weights(params_), N, d_, W_, scratch_.data(), prec_);
}

}  // namespace mohge
