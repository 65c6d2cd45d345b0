// bench_infer: inference speed of one config on a randomly initialised model, as JSON.
//   bench_infer [CONFIG.toml] [--set k=v ...] [--prompt N] [--context N] [--steps N] [--seqs 1,8,32]
//               [--weights-dtype fp32|bf16] [--training-kernels]
// The model is saved and loaded for inference as generate and serve load one (model_load_inference:
// decode's products through the matrix–vector kernel, bf16 weights with --weights-dtype bf16);
// --training-kernels leaves it unfrozen, every product through the GEMM, for comparison.
// prefill: `generate` on an N-token prompt with one new token (the prompt's batched prefill, then
//   one greedy pick), against an eval forward of the same N tokens and the batched eval forward of
//   the config's training batch [batch_size, seq_len] — the rate prefill is measured against.
// decode: S sequences, each prefilled with a --context-token prompt, then --steps batched decode
//   steps of one token per sequence (positions context .. context+steps-1): tokens/s = S·steps / s.
// Uniform random tokens and weights: speed does not depend on them (routing aside, as in training).
#include <omp.h>

#include <chrono>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "core/error.h"
#include "eval/generate.h"
#include "model/model.h"
#include "model/model_io.h"
#include "timing.h"
#include "train/train_config.h"

using namespace mohge;
using clk = std::chrono::steady_clock;

static std::vector<int32_t> random_tokens(size_t n, int V, std::mt19937_64& rng) {
  std::vector<int32_t> t(n);
  for (auto& x : t) x = (int32_t)(rng() % V);
  return t;
}

static std::vector<int> parse_ints(const std::string& s) {
  std::vector<int> v;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) v.push_back(std::stoi(item));
  return v;
}

// Tokens/s of `steps` decode steps of S sequences after a `context`-token prefill of each; best of 3.
static double decode_tokens_per_s(const Model& m, int S, int context, int steps, std::mt19937_64& rng) {
  const int V = m.cfg.vocab_size;
  Context ctx(m, Mode::decode, S, context + steps);
  std::vector<int32_t> seqs;
  for (int s = 0; s < S; s++) seqs.insert(seqs.end(), context, s);
  std::vector<int32_t> all(S), step_seqs(S);
  for (int s = 0; s < S; s++) step_seqs[s] = s;
  double best = 1e30;
  for (int trial = 0; trial < 3; trial++) {
    for (int s = 0; s < S; s++) ctx.clear(s);
    auto prompt = random_tokens(seqs.size(), V, rng);
    m.decode(ctx, prompt.data(), seqs.data(), (int)prompt.size());
    const auto t0 = clk::now();
    for (int k = 0; k < steps; k++) {
      // the next token of each sequence: its greedy pick, as generation would feed
      for (int s = 0; s < S; s++) {
        const float* z = ctx.seq_logits(s);
        all[s] = (int32_t)(std::max_element(z, z + V) - z);
      }
      m.decode(ctx, all.data(), step_seqs.data(), S);
    }
    best = std::min(best, std::chrono::duration<double>(clk::now() - t0).count());
  }
  return (double)S * steps / best;
}

int main(int argc, char** argv) {
  try {
    std::string config, seqs_arg = "1,8,32", weights_dtype;
    bool training_kernels = false;
    std::vector<std::string> sets;
    int prompt_len = 240, context = 64, steps = 32;
    for (int i = 1; i < argc; i++) {
      std::string a = argv[i];
      if (a == "--set" && i + 1 < argc) sets.push_back(argv[++i]);
      else if (a == "--prompt" && i + 1 < argc) prompt_len = std::stoi(argv[++i]);
      else if (a == "--context" && i + 1 < argc) context = std::stoi(argv[++i]);
      else if (a == "--steps" && i + 1 < argc) steps = std::stoi(argv[++i]);
      else if (a == "--seqs" && i + 1 < argc) seqs_arg = argv[++i];
      else if (a == "--weights-dtype" && i + 1 < argc) weights_dtype = argv[++i];
      else if (a == "--training-kernels") training_kernels = true;
      else if (a[0] != '-') config = a;
      else fail("unknown argument {}", a);
    }
    RunConfig rc = run_config_read(config, sets);
    MOHGE_CHECK(prompt_len > 0 && prompt_len < rc.model.max_seq_len, "--prompt {} must be in [1, max_seq_len {})",
                prompt_len, rc.model.max_seq_len);
    MOHGE_CHECK(context > 0 && steps > 0 && context + steps <= rc.model.max_seq_len,
                "--context {} + --steps {} must fit max_seq_len {}", context, steps, rc.model.max_seq_len);
    if (!weights_dtype.empty()) rc.model.matmul_precision = precision_from_string(weights_dtype, "--weights-dtype");
    auto built = std::make_unique<Model>(rc.model);
    built->init_weights(rc.train.seed);
    if (!training_kernels) {
      // through a checkpoint, as generate and serve load one: the weights mapped from the file
      // (2 MiB pages where the kernel can), bf16 copies made at load; the file goes, its mapping stays
      char dir[] = "/tmp/bench_infer.XXXXXX";
      MOHGE_CHECK(::mkdtemp(dir), "cannot create a temporary directory in /tmp: {}", std::strerror(errno));
      struct Remove {
        const char* dir;
        ~Remove() { std::filesystem::remove_all(dir); }
      } remove{dir};
      model_save(dir, *built);
      built = model_load_inference(dir, cpu_backend(), weights_dtype);
    }
    const Model& model = *built;
    const int V = rc.model.vocab_size, B = rc.train.batch_size, T = rc.train.seq_len;
    std::mt19937_64 rng(1);

    const auto prompt = random_tokens(prompt_len, V, rng);
    SamplingOptions greedy;
    greedy.temperature = 0;
    greedy.max_new_tokens = 1;
    const double prefill_s = bench::best_seconds_per_call([&] { generate(model, prompt, greedy); });
    Context eval(model, Mode::eval);
    const double fwd_prompt_s = bench::best_seconds_per_call([&] {
      model.forward(eval, prompt.data(), nullptr, 1, prompt_len);
    });
    const auto batch = random_tokens((size_t)B * T, V, rng);
    const double fwd_batch_s = bench::best_seconds_per_call([&] { model.forward(eval, batch.data(), nullptr, B, T); });
    const double prefill_tps = prompt_len / prefill_s, batch_tps = (double)B * T / fwd_batch_s;

    nlohmann::json decode = nlohmann::json::object();
    for (int S : parse_ints(seqs_arg)) decode[std::to_string(S)] = decode_tokens_per_s(model, S, context, steps, rng);

    nlohmann::json j = {
        {"config", config.empty() ? "<defaults>" : config},
        {"overrides", sets},
        {"matmul_precision", precision_name(rc.model.matmul_precision)},
        {"kernels", training_kernels ? "training (GEMM)" : "inference"},
        {"threads", omp_get_max_threads()},
        {"params", model.params.count()},
        {"prefill", {{"prompt_tokens", prompt_len},
                     {"generate_tokens_per_s", prefill_tps},
                     {"forward_prompt_tokens_per_s", prompt_len / fwd_prompt_s},
                     {"forward_batch", {B, T}},
                     {"forward_batch_tokens_per_s", batch_tps},
                     {"generate_vs_batched_forward", prefill_tps / batch_tps}}},
        {"decode", {{"context", context}, {"steps", steps}, {"tokens_per_s_by_sequences", decode}}}};
    std::printf("%s\n", j.dump(2).c_str());
  } catch (const Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
