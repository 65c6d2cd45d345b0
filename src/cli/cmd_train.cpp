// defines: mohge train
#include "cli/commands.h"
#include "core/error.h"
#include "train/trainer.h"

namespace mohge {

void register_train_commands(CLI::App& app) {
  auto* train = app.add_subcommand("train", "train a model from a TOML config");
  static std::string config;
  static std::vector<std::string> sets;
  static bool resume = false, quiet = false;
  static int stop_after = 0;
  train->add_option("config", config, "TOML config (default: built-in defaults)")->check(CLI::ExistingFile);
  train->add_option("--set", sets, "override a config key, e.g. --set train.lr=3e-4 (repeatable)");
  train->add_flag("--resume", resume, "continue from the newest checkpoint in train.out_dir");
  train->add_option("--stop-after", stop_after, "stop with a checkpoint after this many steps")->check(CLI::NonNegativeNumber);
  train->add_flag("-q,--quiet", quiet, "no progress display");
  add_action(train, [] {
    RunConfig rc = run_config_read(config, sets);
    TrainSummary s = train_run(rc, {resume, !quiet, stop_after});
    fmt::print("trained {} steps: train loss {:.4f}, val loss {:.4f}, {:.0f} tokens/s; checkpoint {}\n",
               s.steps, s.train_loss, s.val_loss, s.tokens_per_s, s.checkpoint);
  });
}

}  // namespace mohge
