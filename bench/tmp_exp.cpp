#include <chrono>
#include <cstdio>
#include <random>
#include "model/model.h"
#include "kernels/matvec.h"
#include "model/context.h"
#include "train/train_config.h"
using namespace mohge;
using clk = std::chrono::steady_clock;
int main(int argc, char** argv) {
  std::vector<std::string> sets;
  if (argc > 2) sets.push_back(std::string("run.matmul_precision=") + argv[2]);
  RunConfig rc = run_config_read(argv[1], sets);
  Model m(rc.model);
  m.init_weights(1);
  m.freeze_for_inference();
  const auto& c = rc.model;
  Backend& be = m.backend();
  Precision p = c.matmul_precision;
  std::vector<std::pair<const float*, std::pair<int,int>>> prods;  // w, (I,O)
  int d = c.hidden_size, F = c.intermediate_size;
  for (int l = 0; l < c.num_layers; l++) {
    std::string pre = "model.layers." + std::to_string(l);
    for (auto [n, I, O] : {std::tuple{".self_attn.q_proj.weight", d, d}, {".self_attn.k_proj.weight", d, d}, {".self_attn.v_proj.weight", d, d}, {".self_attn.o_proj.weight", d, d},
                            {".mlp.gate_proj.weight", d, F}, {".mlp.up_proj.weight", d, F}, {".mlp.down_proj.weight", F, d}}) {
      int id = m.params.find(pre + n);
      if (id < 0) continue;
      prods.push_back({m.params.data(id), {I, O}});
    }
  }
  if (m.params.find("lm_head.weight") >= 0) prods.push_back({m.params.data(m.params.find("lm_head.weight")), {d, c.vocab_size}});
  std::vector<float> x(4096, 0.01f), out(c.vocab_size);
  std::vector<std::vector<float>> copies;
  for (auto& [w, io] : prods) copies.emplace_back(w, w + (size_t)io.first * io.second);
  auto kern2 = [&] { size_t i = 0; for (auto& [w, io] : prods) matvec(out.data(), x.data(), copies[i++].data(), 1, io.first, io.second, false); };
  auto kern = [&] { for (auto& [w, io] : prods) be.matmul_forward(out.data(), x.data(), w, 1, io.first, io.second, false, p); };
  Context ctx(m, Mode::decode, 1, 256);
  int32_t seq = 0;
  std::vector<int32_t> prompt(8, 5);
  std::vector<int32_t> seqs(8, 0);
  auto step = [&](int k) { int32_t t = k % 100; m.decode(ctx, &t, &seq, 1); };
  if (argc > 3) {
    double best = 1e9;
    for (int round = 0; round < 30; round++) {
      ctx.clear(0); m.decode(ctx, prompt.data(), seqs.data(), 8);
      auto t0 = clk::now(); for (int k = 0; k < 200; k++) step(k); best = std::min(best, std::chrono::duration<double>(clk::now()-t0).count()/200);
    }
    std::printf("engine best %.1f us/step\n", best * 1e6);
    return 0;
  }
  for (int round = 0; round < 3; round++) {
    auto t0 = clk::now(); for (int k = 0; k < 200; k++) kern(); double a = std::chrono::duration<double>(clk::now()-t0).count()/200;
    t0 = clk::now(); for (int k = 0; k < 200; k++) kern2(); double a2 = std::chrono::duration<double>(clk::now()-t0).count()/200;
    std::printf("copies kernel %.1f us\n", a2*1e6);
    ctx.clear(0); m.decode(ctx, prompt.data(), seqs.data(), 8);
    t0 = clk::now(); for (int k = 0; k < 64; k++) step(k); double b = std::chrono::duration<double>(clk::now()-t0).count()/64;
    std::printf("kernel-only %.1f us/step (%.0f tok/s)   engine decode %.1f us/step (%.0f tok/s)\n", a*1e6, 1/a, b*1e6, 1/b);
  }
}
