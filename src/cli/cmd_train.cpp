// defines: mohge train
#include "cli/commands.h"
#include <filesystem>
#include <sstream>

#include "core/error.h"
#include "core/parallel_job.h"
#include "eval/eval_loss.h"
#include "model/model_io.h"
#include "train/trainer.h"

namespace mohge {
namespace {

// the trainer's validation is eval's loss (train does not depend on eval)
ValLoss validate_with_eval_loss(Model& model, DataLoader& loader, uint64_t max_batches) {
  EvalResult r = evaluate_loss(model, loader, max_batches);
  return {r.loss, r.tokens};
}

}  // namespace

void register_train_commands(CLI::App& app) {
  auto* train = app.add_subcommand("train", "train a model from a TOML config");
  static std::string config;
  static std::vector<std::string> sets;
  static bool resume = false, quiet = false;
  static int stop_after = 0;
  train->add_option("config", config, "TOML config (default: built-in defaults)")->check(CLI::ExistingFile);
  train->add_option("--set", sets, "override a config key, e.g. --set train.lr=3e-4 (repeatable)")->allow_extra_args(false);
  train->add_flag("--resume", resume, "continue from the newest checkpoint in train.out_dir");
  train->add_option("--stop-after", stop_after, "stop with a checkpoint after this many steps")->check(CLI::NonNegativeNumber);
  train->add_flag("-q,--quiet", quiet, "no progress display");
  add_action(train, [] {
    // under mpirun: one rank of a [parallel] job (core/parallel_job.h; MPI is loaded only then)
    std::unique_ptr<ParallelJob> job = parallel_job_launched() ? parallel_job_open() : nullptr;
    RunConfig rc;
    try {
      rc = run_config_read(config, sets);
      if (job) job->split(rc.parallel.data_parallel, rc.parallel.expert_parallel, rc.parallel.timeout_s);
      MOHGE_CHECK(job || rc.parallel.world() == 1, "[parallel] asks for {0} ranks: start the run with `mpirun -np {0} "
                  "mohge train ...`", rc.parallel.world());
    } catch (const Error&) {
      if (job) job->fail_everywhere();
      throw;
    }
    const ParallelGroups* groups = job && job->size() > 1 ? &job->groups() : nullptr;
    TrainSummary s;
    try {
      s = train_run(rc, {resume, !quiet, stop_after, validate_with_eval_loss, groups});
    } catch (const std::exception& e) {
      if (groups) job->abort(e.what());
      throw;
    }
    if (job && job->rank() != 0) return;  // rank 0 reports
    if (s.already_complete)
      return fmt::print("run already complete: step {} of {}, checkpoint {}\n", s.steps, rc.train.steps, s.checkpoint);
    if (s.interrupted_by) return set_exit_status(128 + s.interrupted_by);  // the shell's convention
    fmt::print("trained {} steps: train loss {:.4f}, val loss {:.4f}, {:.0f} tokens/s; checkpoint {}\n",
               s.steps, s.train_loss, s.val_loss, s.tokens_per_s, s.checkpoint);
  });

  auto* init = app.add_subcommand("init", "write a randomly initialised checkpoint (config.json + model.safetensors)");
  static std::string i_config, i_out;
  static std::vector<std::string> i_sets;
  init->add_option("config", i_config, "TOML config (default: built-in defaults)")->check(CLI::ExistingFile);
  init->add_option("--set", i_sets, "override a config key (repeatable)")->allow_extra_args(false);
  init->add_option("--out", i_out, "output directory")->required();
  add_action(init, [] {
    RunConfig rc = run_config_read(i_config, i_sets);
    Model m(rc.model);
    m.init_weights(rc.train.seed);
    std::filesystem::create_directories(i_out);
    model_save(i_out, m);
    fmt::print("wrote {} ({} parameters)\n", i_out, m.params.count());
  });

  auto* cfg = app.add_subcommand("config", "validate a config and print it resolved (or one key, or every key's reference)");
  static std::string c_config, c_get;
  static std::vector<std::string> c_sets;
  static bool c_keys = false;
  cfg->add_option("config", c_config, "TOML config (default: built-in defaults)")->check(CLI::ExistingFile);
  cfg->add_option("--set", c_sets, "override a config key (repeatable)")->allow_extra_args(false);
  cfg->add_option("--get", c_get, "print only this key, e.g. train.out_dir");
  cfg->add_flag("--keys", c_keys, "print the reference of every key (markdown: docs/CONFIG.md)");
  add_action(cfg, [] {
    if (c_keys) return fmt::print("{}", run_config_reference());
    RunConfig rc = run_config_read(c_config, c_sets);
    if (c_get.empty()) return fmt::print("{}\n", rc.toml);
    auto doc = TomlDoc::parse_string(rc.toml, "<resolved>");
    auto* node = doc.root().at_path(c_get).node();
    MOHGE_CHECK(node, "--get {}: no such key in the resolved config", c_get);
    if (auto* s = node->as_string()) fmt::print("{}\n", s->get());
    else node->visit([](auto&& v) { std::stringstream ss; ss << v; fmt::print("{}\n", ss.str()); });
  });
}

}  // namespace mohge
