// bench_train: training throughput of one config on synthetic tokens, as JSON.
//   bench_train [CONFIG.toml] [--set k=v ...] [--steps N] [--warmup N]
// Prints tokens/s, model FLOP/s (formula below), the sgemm rate (kernels/gemm.h, 2048×1024×1024)
// measured in the same process, their ratio, and the peak resident memory. tokens_per_cpu_s
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
static double flops_per_token(const Model& m, int T) {
  const ModelConfig& c = m.cfg;
  double matmul = m.active_params_per_token() - c.hidden_size * (2.0 * c.num_layers + 1);  // minus norms
  matmul -= c.hidden_size;  // the embedding row counted by active_params_per_token
  if (c.tie_word_embeddings) matmul += (double)c.vocab_size * c.hidden_size;
  return 3.0 * (2.0 * matmul + 4.0 * c.hidden_size * T * c.num_layers);
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
    Model model(rc.model);
    model.init_weights(rc.train.seed);
    AdamW opt(model.params, {});
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
      loss = model.forward(in.data(), tg.data(), B, T, s);
      model.backward(1.0f);
      double norm = grad_global_norm(model.params.backend(), model.params.all_grad(), model.params.total());
      opt.step(model.params, 1e-4, s + 1, grad_clip_factor(norm, 1.0));
      if (s >= warmup) {
        secs += std::chrono::duration<double>(clk::now() - t0).count();
        cpu_secs += cpu_now() - c0;
      }
    }
    double tps = (double)B * T * steps / secs, fpt = flops_per_token(model, T);
    double gemm = sgemm_gflops();
    rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    nlohmann::json j = {{"config", config.empty() ? "<defaults>" : config}, {"overrides", sets},
                        {"matmul_precision", precision_name(rc.model.matmul_precision)},
                        {"batch", B}, {"seq_len", T}, {"steps", steps},
                        {"tokens_per_s", tps}, {"tokens_per_cpu_s", (double)B * T * steps / cpu_secs},
                        {"mflop_per_token", fpt / 1e6},
                        {"model_gflops", tps * fpt / 1e9}, {"sgemm_gflops", gemm},
                        {"fraction_of_sgemm", tps * fpt / 1e9 / gemm},
                        {"peak_rss_mb", ru.ru_maxrss / 1024.0}, {"last_loss", loss},
                        {"params", model.params.count()}};
    std::printf("%s\n", j.dump(2).c_str());
  } catch (const Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
