// defines: tests that a whole model trains alike on every backend — one training step (forward,
// backward, gradient norm, AdamW, forward again) on each backend against the CPU backend, the
// truth: the loss within a relative tolerance, the cosine of the whole gradient with the CPU's
// (and of each parameter tensor's) above a bound, the loss after the AdamW step within the same
// tolerance. fp32 must agree to summation order; bf16 matmuls (inputs rounded to 8 bits) to the
// issue's bounds: loss within 1e-2 relative, gradient cosine > 0.999 (the CPU's own bf16 path,
// checked the same way: 1e-6 and 0.999999 for the dense model). A backend that cannot run here (no
// GPU) is a visible skip; the op table (tests/test_ops.cpp) checks each op on its own. On the staged
// backend (host_accessible = false) the step must equal the CPU's bit for bit, and the MoE layers
// may move nothing between host and backend but one download of their counts each.
#include <gtest/gtest.h>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "core/error.h"
#include "kernels/backend.h"
#include "model/context.h"
#include "model/model.h"
#include "train/optimizer.h"
#include "staged_backend.h"
#include "test_util.h"

using namespace mohge;

namespace {

// test_util's tiny model (GQA: 4 heads, 2 kv heads) at T = 48, which spans two of the GPU
// attention's 32-row tiles; its vocabulary (320) spans more than one block of the cross-entropy kernel.
// Every model kind of the issue: dense, moe (top-k), hmoe (top-k, top-p), mohge (two-level,
// softmax and renorm gates), the MoE ones with every auxiliary loss they have switched on, so the
// router's and the losses' gradients reach the backend too.
ModelConfig small_config(const std::string& kind, Precision p) {
  const bool mohge = kind.rfind("mohge", 0) == 0;
  ModelConfig c = test::tiny_model_config(mohge ? "mohge" : "dense", 64, 0.1);
  MoeConfig& m = c.moe;
  if (kind == "moe_top_k" || kind.rfind("hmoe", 0) == 0) {
    c.ffn_kind = kind == "moe_top_k" ? FfnKind::moe : FfnKind::hmoe;
    m.kind = kind == "moe_top_k" ? MoeKind::moe : MoeKind::hmoe;
    m.num_experts = 4;
    m.expert_widths = kind == "moe_top_k" ? std::vector<int>{12, 12, 12, 12} : std::vector<int>{8, 12, 16, 24};
    m.router = kind == "hmoe_top_p" ? RouterKind::top_p : RouterKind::top_k;
    m.num_experts_per_tok = 2, m.top_p = 0.6, m.max_experts_per_tok = 3;
    m.lb_coef = 0.1, m.pp_coef = 0.2, m.entropy_coef = 0.05;
  }
  if (kind == "mohge_renorm") m.gate_norm = GateNorm::renorm;
  c.matmul_precision = p;
  c.validate();
  return c;
}

const std::vector<std::string> kKinds = {"dense", "moe_top_k", "hmoe_top_k", "hmoe_top_p", "mohge_softmax",
                                         "mohge_renorm"};

struct StepResult {
  double loss = 0, loss_after = 0, grad_norm = 0;
  test::StagedCpuBackend::Transfers transfers;  // during forward + backward (staged backend only)
  int moe_layers = 0;
  int64_t route_stats_bytes = 0;  // Σ over MoE layers of the route stats (kernels/router.h)
  std::vector<std::vector<float>> grads;  // per parameter tensor
  std::vector<std::string> names;
};

// One training step of a freshly initialised model (seed 7) on be: the numbers a trainer logs.
StepResult train_step(Backend& be, const ModelConfig& cfg, const std::vector<int32_t>& in,
                      const std::vector<int32_t>& tg, int B, int T) {
  Model m(cfg, be);
  m.init_weights(7);
  AdamW opt(m.params, {});
  Context ctx(m, Mode::train);
  StepResult r;
  m.params.zero_grad();
  auto* staged = dynamic_cast<test::StagedCpuBackend*>(&be);
  if (staged) staged->transfers = {};
  r.loss = m.forward(ctx, in.data(), tg.data(), B, T, 0);
  m.backward(ctx, 1.0f);
  if (staged) r.transfers = staged->transfers;
  for (int l = 0; l < cfg.num_layers; l++)
    if (auto route = m.ffn(l).routing()) {
      const MoeConfig& mc = route->config;
      r.moe_layers++;
      r.route_stats_bytes += route_stats_size(mc.num_experts, mc.router == RouterKind::two_level ? mc.num_expert_groups : 0) * 8;
    }
  for (const ParamInfo& p : m.params.infos()) {
    std::vector<float> g((size_t)p.numel);
    be.download(g.data(), m.params.all_grad() + p.offset, g.size() * sizeof(float));
    r.grads.push_back(std::move(g));
    r.names.push_back(p.name);
  }
  r.grad_norm = grad_global_norm(be, m.params.all_grad(), m.params.total());
  opt.step(m.params, 1e-3, 1, grad_clip_factor(r.grad_norm, 1.0));
  r.loss_after = m.forward(ctx, in.data(), tg.data(), B, T, 1);
  return r;
}

// cos(a, b); 1 when both are zero (a gradient that is exactly zero on both backends agrees), 0
// when only one is.
double cosine(const std::vector<float>& a, const std::vector<float>& b) {
  double ab = 0, aa = 0, bb = 0;
  for (size_t i = 0; i < a.size(); i++) ab += (double)a[i] * b[i], aa += (double)a[i] * a[i], bb += (double)b[i] * b[i];
  if (aa == 0 || bb == 0) return aa == bb ? 1.0 : 0.0;
  return ab / std::sqrt(aa * bb);
}

using Case = std::tuple<std::string, std::string, Precision>;  // backend, model kind, precision

class BackendTrainingStep : public ::testing::TestWithParam<Case> {};

TEST_P(BackendTrainingStep, MatchesTheCpuBackend) {
  const auto& [backend, kind, prec] = GetParam();
  std::string why;
  static test::StagedCpuBackend staged;
  Backend* be = backend == staged.name() ? &staged : backend_find(backend, &why);
  if (!be) {
    fmt::print("SKIPPED {} training step on {}: {}\n", kind, backend, why);
    GTEST_SKIP() << backend << ": " << why;
  }
  const ModelConfig cfg = small_config(kind, prec);
  const int B = 2, T = 48;
  std::mt19937_64 rng(3);
  std::vector<int32_t> in(B * T), tg(B * T);
  for (auto& t : in) t = (int32_t)(rng() % cfg.vocab_size);
  for (auto& t : tg) t = (int32_t)(rng() % cfg.vocab_size);

  // the truth: the CPU backend in fp32
  const StepResult want = train_step(cpu_backend(), small_config(kind, Precision::fp32), in, tg, B, T);
  const StepResult got = train_step(*be, cfg, in, tg, B, T);
  if (!be->host_accessible() && backend == staged.name()) {
    // the same CPU ops behind uploads and downloads: the same bits as the CPU in that precision
    const StepResult cpu = train_step(cpu_backend(), cfg, in, tg, B, T);
    EXPECT_EQ(got.loss, cpu.loss);
    EXPECT_EQ(got.loss_after, cpu.loss_after);
    for (size_t i = 0; i < got.grads.size(); i++) EXPECT_EQ(got.grads[i], cpu.grads[i]) << got.names[i];
    // traffic: the dense model's (tokens up, the loss down), and inside each MoE layer only its
    // route stats (the counts) come down: routing, aux losses and their gradients stay on the backend
    const StepResult dense = train_step(*be, small_config("dense", prec), in, tg, B, T);
    EXPECT_EQ(got.transfers.uploads, dense.transfers.uploads);
    EXPECT_EQ(got.transfers.upload_bytes, dense.transfers.upload_bytes);
    EXPECT_EQ(got.transfers.downloads, dense.transfers.downloads + got.moe_layers);
    EXPECT_EQ(got.transfers.download_bytes, dense.transfers.download_bytes + got.route_stats_bytes);
    EXPECT_EQ(got.moe_layers > 0, kind != "dense");
    fmt::print("{} {}: forward + backward moved {} uploads ({} B), {} downloads ({} B) over {} MoE layers\n", backend,
               kind, got.transfers.uploads, got.transfers.upload_bytes, got.transfers.downloads,
               got.transfers.download_bytes, got.moe_layers);
  }

  const bool bf16 = prec == Precision::bf16;
  const double loss_tol = bf16 ? 1e-2 : 1e-5, cos_min = bf16 ? 0.999 : 0.99999;
  const double e_loss = std::fabs(got.loss - want.loss) / std::fabs(want.loss);
  const double e_after = std::fabs(got.loss_after - want.loss_after) / std::fabs(want.loss_after);
  const double e_norm = std::fabs(got.grad_norm - want.grad_norm) / want.grad_norm;
  EXPECT_LE(e_loss, loss_tol) << "loss " << got.loss << " vs cpu " << want.loss;
  EXPECT_LE(e_after, loss_tol) << "loss after one AdamW step " << got.loss_after << " vs cpu " << want.loss_after;
  EXPECT_LE(e_norm, bf16 ? 2e-2 : 1e-4) << "gradient norm " << got.grad_norm << " vs cpu " << want.grad_norm;
  ASSERT_EQ(got.grads.size(), want.grads.size());
  // the whole gradient (every tensor concatenated) to the bound; each tensor too in fp32 (under bf16
  // a token near a routing tie may go to another expert, moving that expert's whole gradient)
  std::vector<float> all_got, all_want;
  double worst = 1.0;
  std::string worst_name;
  for (size_t i = 0; i < got.grads.size(); i++) {
    const double c = cosine(got.grads[i], want.grads[i]);
    if (!bf16) {
      EXPECT_GT(c, cos_min) << "gradient of " << got.names[i];
    }
    if (c < worst) worst = c, worst_name = got.names[i];
    all_got.insert(all_got.end(), got.grads[i].begin(), got.grads[i].end());
    all_want.insert(all_want.end(), want.grads[i].begin(), want.grads[i].end());
  }
  const double c_all = cosine(all_got, all_want);
  EXPECT_GT(c_all, cos_min) << "the whole gradient";
  fmt::print("{} {} {}: loss {:.6f} vs cpu {:.6f} (rel {:.1e}), after step rel {:.1e}, grad norm rel {:.1e}, "
             "gradient cosine {:.6f} (worst tensor {:.6f}, {})\n",
             backend, kind, precision_name(prec), got.loss, want.loss, e_loss, e_after, e_norm, c_all, worst, worst_name);
}

// Freezing a model declares every weight tensor to the backend in one call. When that call fails
// (the staged backend throws as a failed allocation of the bf16 copies would) the model is not
// frozen and can be frozen again; a frozen model's ranges go with it: a stale range would send a
// later allocation at the same address to the inference kernels.
TEST(FreezeForInference, AFailureDeclaresNoTensor) {
  test::StagedCpuBackend staged;
  {
    Model m(small_config("mohge_softmax", Precision::fp32), staged);
    const int tensors = (int)m.params.infos().size();
    ASSERT_GT(tensors, 3);
    staged.freeze_fail_at = 0;
    EXPECT_ERROR(m.freeze_for_inference(), "out of memory (a test's failure)");
    EXPECT_EQ(staged.frozen_now, 0);
    staged.freeze_fail_at = -1;
    m.freeze_for_inference();
    EXPECT_EQ(staged.frozen_now, tensors);
  }
  EXPECT_EQ(staged.frozen_now, 0) << "the destroyed model's tensors are still declared";
}

std::vector<Case> cases() {
  std::vector<Case> c;
  for (const std::string& be : backend_names())
    for (const std::string& kind : kKinds)
      for (Precision p : {Precision::fp32, Precision::bf16})
        if (be != "cpu") c.emplace_back(be, kind, p);
  for (const std::string& kind : kKinds) c.emplace_back("cpu-staged", kind, Precision::fp32);
  return c;
}

INSTANTIATE_TEST_SUITE_P(Backends, BackendTrainingStep, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           std::string be = std::get<0>(info.param);
                           std::replace(be.begin(), be.end(), '-', '_');
                           return be + "_" + std::get<1>(info.param) + "_" +
                                  precision_name(std::get<2>(info.param));
                         });

}  // namespace
