// defines: mohge eval
#include <filesystem>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "core/error.h"
#include "eval/eval_loss.h"
#include "model/model_io.h"

namespace fs = std::filesystem;

namespace mohge {

void register_eval_commands(CLI::App& app) {
  // eval
  auto* ev = app.add_subcommand("eval", "validation loss and perplexity of a checkpoint (JSON)");
  static std::string ev_ckpt, ev_data;
  static int ev_batch = 8, ev_seq = 0;
  static uint64_t ev_max = 0;
  ev->add_option("--checkpoint", ev_ckpt, "checkpoint or run directory")->required();
  ev->add_option("--data", ev_data, "token shard (.bin) or a prepared dir (uses val.bin)")->required();
  ev->add_option("--batch-size", ev_batch)->capture_default_str()->check(CLI::PositiveNumber);
  ev->add_option("--seq-len", ev_seq, "default: the model's max_seq_len")->check(CLI::NonNegativeNumber);
  ev->add_option("--max-batches", ev_max, "0 = the whole shard")->capture_default_str();
  add_action(ev, [] {
    std::string dir = checkpoint_resolve(ev_ckpt);
    auto model = model_load(dir);
    std::string shard = fs::is_directory(ev_data) ? ev_data + "/val.bin" : ev_data;
    int T = ev_seq > 0 ? ev_seq : model->cfg.max_seq_len;
    auto ts = std::make_shared<TokenShard>(shard);
    MOHGE_CHECK(ts->vocab_size() <= model->cfg.vocab_size, "{}: vocab {} exceeds the model's {}", shard, ts->vocab_size(), model->cfg.vocab_size);
    DataLoader loader(ts, ev_batch, T, 0);
    EvalResult r = evaluate_loss(*model, loader, ev_max);
    nlohmann::json j = {{"checkpoint", dir}, {"data", shard}, {"loss", r.loss}, {"perplexity", r.perplexity},
                        {"tokens", r.tokens}, {"seq_len", T}};
    fmt::print("{}\n", j.dump(2));
  });

}

}  // namespace mohge
