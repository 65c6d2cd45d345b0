// bench_expert_gemm: throughput of one expert's SwiGLU GEMM chain (forward + backward) as a
// function of the rows routed to it, against the plain sgemm rate measured in the same run.
//   bench_expert_gemm [--d 256] [--widths 288,512,736] [--rows 16,32,64,128,256,512,1024]
//                     [--precision fp32|bf16]   (of the expert GEMMs; the reference is fp32 sgemm)
// Prints JSON: per (width, rows): GFLOP/s and the fraction of sgemm.

#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "kernels/gemm.h"
#include "timing.h"
#include "model/ffn_dense.h"

using namespace mohge;

static std::vector<int> parse_list(const std::string& s) {
  std::vector<int> v;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');) v.push_back(std::stoi(item));
  return v;
}

// ~0.2 s of calls per measurement, best of 2
template <class F> static double time_it(F&& fn) { return bench::best_seconds_per_call(fn, 2, 0.1); }

[[noreturn]] static void fail_usage(const std::string& msg) {
  std::fprintf(stderr, "error: %s\n", msg.c_str());
  std::exit(2);
}

int main(int argc, char** argv) try {
  int d = 256;
  std::vector<int> widths = {288, 512, 736}, rows = {16, 32, 64, 128, 256, 512, 1024};
  Precision prec = Precision::fp32;
  for (int i = 1; i < argc; i += 2) {
    std::string a = argv[i];
    if (i + 1 >= argc) fail_usage("missing value after " + a);
    if (a == "--d") d = std::stoi(argv[i + 1]);
    else if (a == "--widths") widths = parse_list(argv[i + 1]);
    else if (a == "--rows") rows = parse_list(argv[i + 1]);
    else if (a == "--precision") prec = precision_from_string(argv[i + 1], "--precision");
    else fail_usage("unknown argument " + a);
  }
  std::mt19937 rng(1);
  std::normal_distribution<float> nd(0.0f, 0.02f);
  auto randv = [&](size_t n) { std::vector<float> v(n); for (auto& x : v) x = nd(rng); return v; };

  // sgemm reference: a large square product
  const int S = 1024;
  auto a = randv((size_t)S * S), b = randv((size_t)S * S), c = randv((size_t)S * S);
  double sgemm = 2.0 * S * S * S / time_it([&] {
    mohge::gemm(false, false, S, S, S, 1, a.data(), S, b.data(), S, 0, c.data(), S);
  }) / 1e9;

  nlohmann::json results = nlohmann::json::array();
  for (int W : widths) {
    auto wg = randv((size_t)W * d), wu = randv((size_t)W * d), wd = randv((size_t)d * W);
    std::vector<float> gg((size_t)W * d), gu((size_t)W * d), gd((size_t)d * W);
    SwigluWeights w{wg.data(), wu.data(), wd.data()};
    SwigluGrads gr{gg.data(), gu.data(), gd.data()};
    for (int n : rows) {
      auto x = randv((size_t)n * d), dout = randv((size_t)n * d);
      std::vector<float> out((size_t)n * d), dx((size_t)n * d), g((size_t)n * W), u((size_t)n * W),
          act((size_t)n * W), scratch(3 * (size_t)n * W);
      double s = time_it([&] {
        swiglu_ffn_forward(mohge::cpu_backend(), out.data(), g.data(), u.data(), act.data(), x.data(), w, n, d, W, false, prec);
        swiglu_ffn_backward(mohge::cpu_backend(), dx.data(), gr, dout.data(), x.data(), g.data(), u.data(), act.data(), w, n, d, W,
                            scratch.data(), prec);
      });
      double flops = 3.0 * 2.0 * 3.0 * n * d * W;  // 3 GEMMs forward, 6 backward, 2 flop/MAC
      results.push_back({{"width", W}, {"rows", n}, {"gflops", flops / s / 1e9}, {"fraction_of_sgemm", flops / s / 1e9 / sgemm}});
    }
  }
  nlohmann::json j = {{"d", d}, {"precision", precision_name(prec)}, {"sgemm_gflops", sgemm}, {"results", results}};
  std::printf("%s\n", j.dump(1).c_str());
} catch (const std::exception& e) {
  std::fprintf(stderr, "error: %s\n", e.what());
  return 1;
}
