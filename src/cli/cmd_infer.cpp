// defines: mohge generate | forward | grad
#include <cstring>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/commands.h"
#include "kernels/backend.h"
#include "core/error.h"
#include "core/npy.h"
#include "core/safetensors.h"
#include "data/text_stream.h"
#include "data/tokenizer.h"
#include "eval/generate.h"
#include "eval/inference_checkpoint.h"
#include "model/model_io.h"

namespace mohge {

static std::vector<int32_t> parse_tokens(const std::string& s) {
  std::vector<int32_t> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    long v = 0;
    try {
      size_t used;
      v = std::stol(item, &used);
      MOHGE_CHECK(used == item.size(), "");
    } catch (...) {
      fail("--tokens: '{}' is not an integer", item);
    }
    // no silent wrap-around: 4294967297 must not become token 1
    MOHGE_CHECK(v >= INT32_MIN && v <= INT32_MAX, "--tokens: token id {} is outside the vocabulary", v);
    out.push_back((int32_t)v);
  }
  MOHGE_CHECK(!out.empty(), "--tokens: no tokens given");
  return out;
}

void register_infer_commands(CLI::App& app) {
  // generate
  auto* gen = app.add_subcommand("generate", "generate text from a prompt (KV cache)");
  static std::string g_ckpt, g_prompt, g_backend = "cpu";
  static SamplingOptions g_opt;
  gen->add_option("--checkpoint", g_ckpt, "checkpoint or run directory")->required();
  gen->add_option("--prompt", g_prompt, "prompt text")->required();
  gen->add_option("--max-tokens", g_opt.max_new_tokens)->capture_default_str()->check(CLI::PositiveNumber);
  gen->add_option("--temperature", g_opt.temperature, "0 = greedy")->capture_default_str()->check(CLI::NonNegativeNumber);
  gen->add_option("--top-k", g_opt.top_k, "0 = off")->capture_default_str()->check(CLI::NonNegativeNumber);
  gen->add_option("--top-p", g_opt.top_p, "nucleus sampling, 1 = off")->capture_default_str()->check(CLI::Range(1e-9, 1.0));
  gen->add_option("--seed", g_opt.seed)->capture_default_str();
  add_backend_option(gen, g_backend);
  static bool g_replace = false;
  gen->add_flag("--replace-invalid-utf8", g_replace, kReplaceInvalidUtf8Help);
  static std::string g_weights;
  add_weights_dtype_option(gen, g_weights);
  add_action(gen, [] {
    utf8_validate(g_prompt, invalid_utf8_policy(g_replace), "--prompt", 1, 0);
    InferenceCheckpoint ck = open_inference_checkpoint(g_ckpt, backend_get(g_backend), g_weights);
    Model* model = ck.model.get();
    const Tokenizer& tok = ck.tok;
    SamplingOptions o = g_opt;
    o.eos_id = tok.eos_id();
    o.vocab_limit = tok.vocab_size();  // a padded model vocabulary has ids the tokenizer cannot decode
    std::vector<int32_t> prompt = tok.encode(g_prompt);
    // training data separates documents by EOS (never BOS), so a document starts after an EOS
    if (tok.eos_id() >= 0) prompt.insert(prompt.begin(), tok.eos_id());
    MOHGE_CHECK(!prompt.empty(), "--prompt: empty after tokenization");
    fmt::print("{}", g_prompt);
    // decoded after the prompt, whole characters only (data/text_stream.h)
    TextStream text(tok, prompt);
    generate(*model, prompt, o, [&](int32_t t) {
      fmt::print("{}", text.push(t));
      std::fflush(stdout);
    });
    fmt::print("{}\n", text.flush());
  });

  // forward
  auto* fwd = app.add_subcommand("forward", "write float32 logits [T, vocab] of a token sequence as .npy");
  static std::string f_ckpt, f_tokens, f_out, f_backend = "cpu";
  fwd->add_option("--checkpoint", f_ckpt)->required();
  add_backend_option(fwd, f_backend);
  fwd->add_option("--tokens", f_tokens, "comma-separated token ids")->required();
  fwd->add_option("--out", f_out, "output .npy")->required();
  add_action(fwd, [] {
    auto model = model_load(checkpoint_resolve(f_ckpt), backend_get(f_backend));
    auto toks = parse_tokens(f_tokens);
    Context ctx(*model, Mode::eval);
    model->forward(ctx, toks.data(), nullptr, 1, (int)toks.size());
    npy_write_f32(f_out, ctx.logits(), {(int64_t)toks.size(), model->cfg.vocab_size});
    fmt::print("wrote {} [{}, {}]\n", f_out, toks.size(), model->cfg.vocab_size);
  });

  // grad: loss, logits and every parameter gradient, to diff against tools/torch_ref.py
  auto* grad = app.add_subcommand("grad", "write logits, loss and all parameter gradients (safetensors)");
  static std::string d_ckpt, d_tokens, d_out, d_backend = "cpu";
  static int64_t d_step = 0;
  grad->add_option("--checkpoint", d_ckpt)->required();
  add_backend_option(grad, d_backend);
  grad->add_option("--tokens-file", d_tokens, "safetensors with I32 'tokens' [B, T+1]")->required();
  grad->add_option("--out", d_out, "output .safetensors")->required();
  grad->add_option("--step", d_step, "training step (aux losses that start late)")->capture_default_str();
  add_action(grad, [] {
    auto model = model_load(checkpoint_resolve(d_ckpt), backend_get(d_backend));
    auto tf = SafetensorsFile::load(d_tokens);
    const TensorView& t = tf.get("tokens");
    MOHGE_CHECK(t.dtype == "I32" && t.shape.size() == 2 && t.shape[1] >= 2, "{}: 'tokens' must be I32 [B, T+1]", d_tokens);
    MOHGE_CHECK(t.shape[0] <= 1 << 20 && t.shape[1] <= model->cfg.max_seq_len + 1,
                "{}: 'tokens' {} exceeds 2^20 rows or the model's max_seq_len {} + 1", d_tokens, shape_str(t.shape),
                model->cfg.max_seq_len);
    const int B = (int)t.shape[0], T = (int)t.shape[1] - 1;
    std::vector<int32_t> all(t.nbytes / 4);  // copied: the file gives no alignment guarantee
    std::memcpy(all.data(), t.data, t.nbytes);
    std::vector<int32_t> in, tg;
    for (int b = 0; b < B; b++)
      for (int i = 0; i < T; i++) in.push_back(all[b * (T + 1) + i]), tg.push_back(all[b * (T + 1) + i + 1]);
    Context ctx(*model, Mode::train);
    double lm = model->forward(ctx, in.data(), tg.data(), B, T, d_step);
    std::vector<float> logits(ctx.logits(), ctx.logits() + (size_t)B * T * model->cfg.vocab_size);
    float lmf = (float)lm, total = (float)(lm + ctx.aux_loss());
    model->params.zero_grad();
    model->backward(ctx, 1.0f);
    std::vector<TensorView> out = {
        {"logits", "F32", {B, T, model->cfg.vocab_size}, logits.data(), logits.size() * 4},
        {"loss", "F32", {1}, &total, 4},
        {"lm_loss", "F32", {1}, &lmf, 4}};
    std::vector<float> staging;
    const float* grad = model->params.host_grad(staging);
    for (auto& p : model->params.infos())
      out.push_back({"grad." + p.name, "F32", p.shape, grad + p.offset, (size_t)p.numel * 4});
    safetensors_write(d_out, out);
    fmt::print("wrote {} (loss {:.6f})\n", d_out, total);
  });
}

}  // namespace mohge
