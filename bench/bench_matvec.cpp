// bench_matvec: decode's matrix–vector kernel (kernels/matvec.h) on one config's decode shapes, as
// JSON: for each weights dtype and number of input rows N (running sequences), the time of one
// decode step's products over every layer's weights and the LM head, and the weight bytes read per
// second — the kernel's bound, since each weight is read once per step.
//   bench_matvec [CONFIG.toml] [--set k=v ...] [--rows 1,8,32]
// Shapes of a dense-FFN layer: q, k, v, o, gate, up, down; an MoE layer's activated experts have
// the same shapes at their widths, so the dense preset is the representative case.
#include <omp.h>

#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <vector>

#include "core/error.h"
#include "kernels/gemm.h"
#include "kernels/matvec.h"
#include "model/model_config.h"
#include "timing.h"
#include "train/train_config.h"

using namespace mohge;

namespace {

// A weight matrix in both dtypes, each from a cache line as the engine holds them (ParamTable).
struct Weights {
  int O, I;
  std::vector<float> store32;
  std::vector<uint16_t> store16;
  float* f32;
  uint16_t* bf16;
  Weights(int o, int i) : O(o), I(i), store32((size_t)o * i + 16), store16((size_t)o * i + 32) {
    f32 = reinterpret_cast<float*>(line(store32.data()));
    bf16 = reinterpret_cast<uint16_t*>(line(store16.data()));
  }
  size_t size() const { return (size_t)O * I; }
  static uintptr_t line(const void* p) { return (reinterpret_cast<uintptr_t>(p) + 63) & ~uintptr_t{63}; }
};

std::vector<int> parse_ints(const std::string& s) {
  std::vector<int> v;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) v.push_back(std::stoi(item));
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    std::string config, rows_arg = "1,8,32";
    std::vector<std::string> sets;
    for (int i = 1; i < argc; i++) {
      std::string a = argv[i];
      if (a == "--set" && i + 1 < argc) sets.push_back(argv[++i]);
      else if (a == "--rows" && i + 1 < argc) rows_arg = argv[++i];
      else if (a[0] != '-') config = a;
      else fail("unknown argument {}", a);
    }
    MOHGE_CHECK(matvec_supported(), "this build has no matvec kernel (needs AVX-512)");
    const ModelConfig mc = run_config_read(config, sets).model;
    const int D = mc.hidden_size, F = mc.intermediate_size, hd = D / mc.num_heads;
    std::vector<std::pair<int, int>> shapes;  // (O, I) of one step's products
    for (int l = 0; l < mc.num_layers; l++) {
      for (auto oi : {std::pair{D, D}, {mc.num_kv_heads * hd, D}, {mc.num_kv_heads * hd, D}, {D, D}, {F, D}, {F, D},
                      {D, F}})
        shapes.push_back(oi);
    }
    shapes.push_back({mc.vocab_size, D});
    std::mt19937 rng(1);
    std::uniform_real_distribution<float> u(-0.05f, 0.05f);
    std::vector<Weights> ws;
    size_t elems = 0;
    int widest = 0;
    for (auto [O, I] : shapes) {
      Weights w(O, I);
      for (size_t k = 0; k < w.size(); k++) w.bf16[k] = bf16_from_float(w.f32[k] = u(rng));
      elems += w.size();
      widest = std::max({widest, O, I});
      ws.push_back(std::move(w));
    }
    const bool bf16 = matvec_bf16_supported();
    nlohmann::json res = nlohmann::json::array();
    for (int N : parse_ints(rows_arg)) {
      MOHGE_CHECK(N >= 1 && N <= kMatvecMaxRows, "--rows {} must be in [1, {}]", N, kMatvecMaxRows);
      std::vector<float> x((size_t)N * widest), out((size_t)N * widest);
      for (auto& v : x) v = u(rng);
      for (const char* dtype : {"fp32", "bf16"}) {
        const bool half = std::string(dtype) == "bf16";
        if (half && !bf16) continue;
        const double s = bench::best_seconds_per_call([&] {
          for (const auto& w : ws) {
            if (half) matvec(out.data(), x.data(), w.bf16, N, w.I, w.O, false);
            else matvec(out.data(), x.data(), w.f32, N, w.I, w.O, false);
          }
        });
        res.push_back({{"rows", N},
                       {"weights_dtype", dtype},
                       {"step_ms", s * 1e3},
                       {"tokens_per_s", N / s},
                       {"weight_gb_per_s", (double)elems * (half ? 2 : 4) / s / 1e9}});
      }
    }
    nlohmann::json j = {{"config", config.empty() ? "<defaults>" : config},
                        {"threads", omp_get_max_threads()},
                        {"weight_elements", elems},
                        {"results", res}};
    std::printf("%s\n", j.dump(2).c_str());
  } catch (const Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
