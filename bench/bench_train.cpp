// bench_train: training throughput of one config on synthetic tokens, as JSON.
//   bench_train [CONFIG.toml] [--set k=v ...] [--steps N] [--warmup N]
// Prints tokens/s, model FLOP/s (formula below), the sgemm rate (kernels/gemm.h, 2048×1024×1024)
// measured in the same process, their ratio, and the peak resident memory. The model runs on
// run.backend (--set run.backend=cuda): on a GPU the sgemm figures give way to MFU (issue 10's
// formula) and the GPU's own 8192³ matmul rate. tokens_per_cpu_s
// divides by the CPU time of the timed steps (all threads): on one thread (OMP_NUM_THREADS=1)
// that is the work done, which a loaded shared machine inflates far less than wall time.
// Synthetic uniform tokens: routing and speed do not depend on the text, and the benchmark needs
// no corpus.
#include <sys/resource.h>
#include <time.h>

#include <chrono>
#include <cstring>
#include <nlohmann/json.hpp>
#include <random>

#include "core/error.h"
#include "kernels/backend.h"
#include "kernels/gemm.h"
#include "timing.h"
#include "model/model.h"
#include "train/optimizer.h"
#include "train/train_config.h"

using namespace mohge;
using clk = std::chrono::steady_clock;

// Model FLOPs per trained token = 3 × forward, forward = 2 × (activated matmul parameters incl.
// router and LM head, excl. the embedding lookup) + 4·d·T per layer for attention scores and
// values (full T×T, the convention of DATA.md's PyTorch figure).
static double flops_per_token(const Context& ctx, int T) {
  const ModelConfig& c = ctx.model().cfg;
  double matmul = ctx.active_params_per_token() - c.hidden_size * (2.0 * c.num_layers + 1);  // minus norms
  matmul -= c.hidden_size;  // the embedding row counted by active_params_per_token
  if (c.tie_word_embeddings) matmul += (double)c.vocab_size * c.hidden_size;
  return 3.0 * (2.0 * matmul + 4.0 * c.hidden_size * T * c.num_layers);
}

// Model FLOPs per token as issue 10 counts them for MFU on a GPU: 6 × activated matmul parameters
// + 6·L·d·T (causal attention: half of the T×T scores and values).
static double causal_flops_per_token(const Context& ctx, int T) {
  const ModelConfig& c = ctx.model().cfg;
  return flops_per_token(ctx, T) - 6.0 * c.hidden_size * T * c.num_layers;
}

// A GPU's matmul rate in the run's precision, measured in the same process: 8192³ (issue 10's
// ceiling: ~790 TFLOP/s in bf16 on an H200), best of 5 half-second measurements.
static double device_matmul_tflops(Backend& be, Precision p) {
  const int n = 8192;
  Buffer<float> a(be, (size_t)n * n), w(be, (size_t)n * n), c(be, (size_t)n * n);
  be.fill(a.data(), 0.5f, (int64_t)n * n);
  be.fill(w.data(), 0.25f, (int64_t)n * n);
  return 2.0 * n * n * n / 1e12 / bench::best_seconds_per_call([&] {
    be.matmul_forward(c.data(), a.data(), w.data(), n, n, n, false, p);
    be.synchronize();
  }, 5, 0.5);
}

// Best of 5 half-second measurements: the machine is shared, the peak is the stable number.
static double sgemm_gflops() {
  const int M = 2048, N = 1024, K = 1024;
  std::vector<float> a((size_t)M * K, 0.5f), b((size_t)K * N, 0.25f), c((size_t)M * N);
  return 2.0 * M * N * K / 1e9 / bench::best_seconds_per_call([&] {
    gemm(false, false, M, N, K, 1, a.data(), K, b.data(), N, 0, c.data(), N);
  }, 5, 0.5);
}

int main(int argc, char** argv) {
  try {
    std::string config;
    std::vector<std::string> sets;
    int steps = 10, warmup = 2;
    for (int i = 1; i < argc; i++) {
      std::string a = argv[i];
      if (a == "--set" && i + 1 < argc) sets.push_back(argv[++i]);
      else if (a == "--steps" && i + 1 < argc) steps = std::stoi(argv[++i]);
      else if (a == "--warmup" && i + 1 < argc) warmup = std::stoi(argv[++i]);
      else if (a[0] != '-') config = a;
      else fail("unknown argument {}", a);
    }
    RunConfig rc = run_config_read(config, sets);
    const int B = rc.train.batch_size, T = rc.train.seq_len, V = rc.model.vocab_size;
    Backend& be = backend_get(rc.run.backend);
    Model model(rc.model, be);
    model.init_weights(rc.train.seed);
    AdamW opt(model.params, {});
    Context ctx(model, Mode::train);
    std::mt19937_64 rng(1);
    std::vector<int32_t> in((size_t)B * T), tg((size_t)B * T);
    double loss = 0, secs = 0, cpu_secs = 0;
    auto cpu_now = [] {
      timespec ts;
      clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
      return ts.tv_sec + ts.tv_nsec * 1e-9;
    };
    for (int s = 0; s < warmup + steps; s++) {
      for (auto& t : in) t = (int32_t)(rng() % V);
      for (auto& t : tg) t = (int32_t)(rng() % V);
      auto t0 = clk::now();
      const double c0 = cpu_now();
      model.params.zero_grad();
      loss = model.forward(ctx, in.data(), tg.data(), B, T, s);
      model.backward(ctx, 1.0f);
      double norm = grad_global_norm(model.params.backend(), model.params.all_grad(), model.params.total());
      opt.step(model.params, 1e-4, s + 1, grad_clip_factor(norm, 1.0));
      be.synchronize();  // a GPU step has finished only when its queue has
      if (s >= warmup) {
        secs += std::chrono::duration<double>(clk::now() - t0).count();
        cpu_secs += cpu_now() - c0;
      }
    }
    double tps = (double)B * T * steps / secs, fpt = flops_per_token(ctx, T);
    rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    nlohmann::json j = {{"config", config.empty() ? "<defaults>" : config}, {"overrides", sets},
                        {"backend", be.name()},
                        {"matmul_precision", precision_name(rc.model.matmul_precision)},
                        {"batch", B}, {"seq_len", T}, {"steps", steps},
                        {"tokens_per_s", tps}, {"tokens_per_cpu_s", (double)B * T * steps / cpu_secs},
                        {"mflop_per_token", fpt / 1e6},
                        {"model_gflops", tps * fpt / 1e9},
                        {"peak_rss_mb", ru.ru_maxrss / 1024.0}, {"last_loss", loss},
                        {"params", model.params.count()}};
    if (be.host_accessible()) {
      const double gemm = sgemm_gflops();
      j["sgemm_gflops"] = gemm;
      j["fraction_of_sgemm"] = tps * fpt / 1e9 / gemm;
    } else {
      // MFU against the H200's dense bf16 peak (989 TFLOP/s), and the matmul rate of this run
      const double cfpt = causal_flops_per_token(ctx, T), mm = device_matmul_tflops(be, rc.model.matmul_precision);
      j["mfu_formula"] = "tokens/s x (6 x activated matmul params + 6 L d T) / 989e12";
      j["mfu"] = tps * cfpt / 989e12;
      j["device_matmul_tflops"] = mm;
      j["fraction_of_device_matmul"] = tps * cfpt / 1e12 / mm;
    }
    std::printf("%s\n", j.dump(2).c_str());
  } catch (const Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
