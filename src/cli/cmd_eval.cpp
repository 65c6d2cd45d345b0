// defines: mohge eval — tasks loss | mc | pairs | cloze, one JSON object on stdout
#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "kernels/backend.h"
#include "core/error.h"
#include "core/fileio.h"
#include "data/prepared_meta.h"
#include "data/tokenizer.h"
#include "eval/cloze.h"
#include "eval/eval_loss.h"
#include "eval/score.h"
#include "eval/tasks.h"
#include "model/model_io.h"

namespace fs = std::filesystem;

namespace mohge {

namespace {

struct EvalArgs {
  std::string ckpt, task = "loss", data, write, tokenizer, start = "eos", backend = "cpu";
  std::vector<std::string> corpus = {"data/default/corpus.txt"};
  bool corpus_set = false, split_seed_set = false, frac_set = false;  // given on the command line
  int batch = 8, seq = 0, n = 0, context_sentences = 3;
  uint64_t max_batches = 0, seed = 1234, split_seed = 1337;
  double val_fraction = 0.05;
  bool replace_invalid_utf8 = false;
};

nlohmann::json mc_json(const McMetrics& m) {
  return {{"acc", m.acc}, {"acc_stderr", m.acc_stderr}, {"acc_norm", m.acc_norm}, {"acc_norm_stderr", m.acc_norm_stderr}};
}

template <class T>
std::vector<T> first_n(std::vector<T> v, int n) {
  if (n > 0 && (size_t)n < v.size()) v.resize((size_t)n);
  return v;
}

void run_eval(const EvalArgs& a) {
  const auto t0 = std::chrono::steady_clock::now();
  const bool needs_data = a.task != "cloze";
  MOHGE_CHECK(!needs_data || !a.data.empty(), "--data is required for --task {}", a.task);
  MOHGE_CHECK(a.write.empty() || a.task == "cloze", "--write is only for --task cloze");
  MOHGE_CHECK(!a.ckpt.empty() || (a.task == "cloze" && !a.write.empty()),
              "--checkpoint is required (only --task cloze --write runs without one)");
  nlohmann::json out = {{"task", a.task}};

  std::vector<ClozeItem> cloze;
  if (a.task == "cloze") {
    ClozeOptions co;
    co.n = a.n > 0 ? a.n : 500;
    co.seed = a.seed;
    co.split_seed = a.split_seed;
    co.val_fraction = a.val_fraction;
    co.context_sentences = a.context_sentences;
    co.invalid_utf8 = invalid_utf8_policy(a.replace_invalid_utf8);
    std::vector<std::string> corpus = a.corpus;
    if (!a.data.empty()) {
      // a prepared dir: its meta.json names the source files, the seed, the val fraction and the
      // UTF-8 policy
      const std::string meta_path = (fs::path(a.data) / "meta.json").string();
      MOHGE_CHECK(fs::is_regular_file(meta_path), "--task cloze --data '{}': no meta.json there (a dir from data prepare)",
                  a.data);
      const PreparedMeta meta = prepared_meta_read(meta_path);
      if (!a.corpus_set) corpus = meta.sources;
      if (!a.split_seed_set) co.split_seed = meta.seed;
      if (!a.frac_set) co.val_fraction = meta.val_fraction;
      if (!a.replace_invalid_utf8) co.invalid_utf8 = meta.invalid_utf8;
    }
    for (const auto& f : corpus)
      MOHGE_CHECK(fs::is_regular_file(f), "cloze corpus '{}' not found (pass --corpus FILE; `mohge data fetch` writes data/default/corpus.txt)", f);
    cloze = build_cloze_from_corpus(corpus, co);
    out["corpus"] = corpus;
    out["seed"] = a.seed;
    out["split_seed"] = co.split_seed;
    out["val_fraction"] = co.val_fraction;
    out["context_sentences"] = a.context_sentences;
    out["requested_n"] = co.n;
    if (!a.write.empty()) {
      std::vector<McItem> items;
      std::vector<nlohmann::json> extra;
      for (const auto& c : cloze) items.push_back(c.mc), extra.push_back(c.extra());
      write_mc_jsonl(a.write, items, extra);
      out["written"] = a.write;
    }
    if (a.ckpt.empty()) {  // export only
      out["n"] = cloze.size();
      fmt::print("{}\n", out.dump(2));
      return;
    }
  }

  // bad task files fail before the (possibly slow) model load
  std::vector<McItem> mc_items;
  std::vector<PairItem> pair_items;
  const InvalidUtf8 utf8 = invalid_utf8_policy(a.replace_invalid_utf8);
  if (a.task == "mc") mc_items = first_n(load_mc_jsonl(a.data, utf8), a.n);
  if (a.task == "pairs") pair_items = first_n(load_pairs_jsonl(a.data, utf8), a.n);
  for (const auto& c : cloze) mc_items.push_back(c.mc);

  const std::string dir = checkpoint_resolve(a.ckpt);
  auto model = model_load(dir, backend_get(a.backend));
  out["checkpoint"] = dir;

  if (a.task == "loss") {
    std::string shard = fs::is_directory(a.data) ? a.data + "/val.bin" : a.data;
    int T = a.seq > 0 ? a.seq : model->cfg.max_seq_len;
    auto ts = std::make_shared<TokenShard>(shard);
    MOHGE_CHECK(ts->vocab_size() <= model->cfg.vocab_size, "{}: vocab {} exceeds the model's {}", shard,
                ts->vocab_size(), model->cfg.vocab_size);
    const std::string ckpt_tok = dir + "/tokenizer.model";  // the run's tokenizer must be the shard's
    if (fs::is_regular_file(ckpt_tok)) check_tokenizer_matches_shard(Tokenizer::load(ckpt_tok), ckpt_tok, *ts);
    DataLoader loader(ts, a.batch, T, 0);
    EvalResult r = evaluate_loss(*model, loader, a.max_batches);
    out["data"] = shard;
    out["metrics"] = {{"loss", r.loss}, {"perplexity", r.perplexity}};
    out["n"] = r.tokens;
    // the flat keys of the original `mohge eval` output, kept for scripts that read them
    out["loss"] = r.loss;
    out["perplexity"] = r.perplexity;
    out["tokens"] = r.tokens;
    out["seq_len"] = T;
  } else {
    const std::string tok_path = a.tokenizer.empty() ? dir + "/tokenizer.model" : a.tokenizer;
    MOHGE_CHECK(!a.tokenizer.empty() || fs::exists(tok_path),
                "{}: checkpoint has no tokenizer.model (pass --tokenizer)", dir);
    Tokenizer tok = Tokenizer::load(tok_path);
    check_tokenizer_fits_model(tok, tok_path, model->cfg.vocab_size);
    TaskOptions opt;
    opt.batch_size = a.batch;
    opt.start_token = start_token_id(tok, a.start);
    out["start_token"] = opt.start_token;
    ScoreStats stats;
    if (a.task == "pairs") {
      PairsEval r = evaluate_pairs(*model, tok, pair_items, opt);
      out["data"] = a.data;
      out["metrics"] = {{"acc", r.acc}, {"acc_stderr", r.acc_stderr}};
      out["n"] = r.n;
      stats = r.stats;
    } else {
      if (a.task == "mc") out["data"] = a.data;
      McEval r = evaluate_mc(*model, tok, mc_items, opt);
      out["metrics"] = mc_json(r.metrics);
      out["n"] = r.metrics.n;
      stats = r.stats;
    }
    out["sequences"] = stats.sequences;
    out["scored_tokens"] = stats.scored_tokens;
    out["truncated"] = stats.truncated;
    out["batches"] = stats.batches;
  }
  out["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  fmt::print("{}\n", out.dump(2));
}

}  // namespace

void register_eval_commands(CLI::App& app) {
  auto* ev = app.add_subcommand(
      "eval", "evaluate a checkpoint (JSON): validation loss, multiple-choice / minimal-pair files, built-in cloze");
  static EvalArgs a;
  ev->add_option("--checkpoint", a.ckpt, "checkpoint or run directory");
  add_backend_option(ev, a.backend);
  ev->add_option("--task", a.task, "loss | mc | pairs | cloze")
      ->capture_default_str()
      ->check(CLI::IsMember({"loss", "mc", "pairs", "cloze"}));
  ev->add_option("--data", a.data,
                 "loss: token shard (.bin) or a prepared dir (uses val.bin); mc / pairs: a .jsonl file; "
                 "cloze: a prepared dir, whose meta.json gives the corpus files, split seed and val fraction");
  ev->add_option("--batch-size", a.batch, "sequences per forward")->capture_default_str()->check(CLI::PositiveNumber);
  ev->add_option("--seq-len", a.seq, "loss: window length (default: the model's max_seq_len)")
      ->check(CLI::NonNegativeNumber);
  ev->add_option("--max-batches", a.max_batches, "loss: 0 = the whole shard")->capture_default_str();
  ev->add_option("--n", a.n, "items: mc / pairs: the first N (0 = all); cloze: how many to build (0 = 500)")
      ->check(CLI::NonNegativeNumber);
  auto* corpus_opt = ev->add_option("--corpus", a.corpus, "cloze: corpus text file(s) given to data prepare")->capture_default_str();
  ev->add_option("--seed", a.seed, "cloze: item sampling seed")->capture_default_str();
  auto* split_opt = ev->add_option("--split-seed", a.split_seed, "cloze: data prepare's --seed (held-out documents)")
      ->capture_default_str();
  auto* frac_opt = ev->add_option("--val-fraction", a.val_fraction, "cloze: data prepare's --val-fraction")
      ->capture_default_str()
      ->check(CLI::Range(1e-9, 0.999999));
  ev->add_option("--context-sentences", a.context_sentences, "cloze: sentences of context before the target")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  ev->add_option("--write", a.write, "cloze: also write the items as multiple-choice JSONL (no --checkpoint: only write)");
  ev->add_option("--start-token", a.start, "token every scored sequence starts from: eos | bos")
      ->capture_default_str()
      ->check(CLI::IsMember({"eos", "bos"}));
  ev->add_option("--tokenizer", a.tokenizer, "default: CKPT/tokenizer.model");
  ev->add_flag("--replace-invalid-utf8", a.replace_invalid_utf8, kReplaceInvalidUtf8Help);
  add_action(ev, [corpus_opt, split_opt, frac_opt] {
    a.corpus_set = corpus_opt->count() > 0;
    a.split_seed_set = split_opt->count() > 0;
    a.frac_set = frac_opt->count() > 0;
    run_eval(a);
  });
}

}  // namespace mohge
