// defines: mohge analyze
#include <fmt/format.h>
#include <omp.h>

#include "cli/commands.h"
#include "eval/analyze.h"

namespace mohge {

void register_analyze_commands(CLI::App& app) {
  auto* an = app.add_subcommand(
      "analyze",
      "routing analysis of a MoE checkpoint: activated parameters, expert/group shares, token frequency vs expert "
      "width, Wasserstein heatmaps, device loads -> report.html + analysis.json + CSVs");
  static AnalyzeOptions o;
  static int threads = 0;
  an->add_option("checkpoint", o.checkpoint, "checkpoint or run directory (its newest checkpoint)")->required();
  an->add_option("--data", o.data, "token shard (.bin) or a prepared dir (uses val.bin)")->required();
  an->add_option("--out", o.out_dir, "output directory (default: CHECKPOINT/analysis)");
  an->add_option("--batches", o.batches, "evaluation batches to run")->capture_default_str()->check(CLI::PositiveNumber);
  an->add_option("--batch-size", o.batch_size)->capture_default_str()->check(CLI::PositiveNumber);
  an->add_option("--seq-len", o.seq_len, "default: the model's max_seq_len")->check(CLI::NonNegativeNumber);
  an->add_option("--devices", o.devices, "devices D for the placement loads")->capture_default_str()->check(CLI::PositiveNumber);
  an->add_option("--log", o.log, "training log (default: RUN/log.jsonl beside RUN/checkpoints/)");
  an->add_option("--threads", threads, "OpenMP threads (0 = default)")->check(CLI::NonNegativeNumber);
  add_action(an, [] {
    if (threads > 0) omp_set_num_threads(threads);
    AnalyzeResult r = analyze_checkpoint(o);
    fmt::print("{}", r.summary);
  });
}

}  // namespace mohge
