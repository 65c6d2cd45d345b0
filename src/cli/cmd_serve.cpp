// defines: mohge serve
#include "cli/commands.h"
#include "serve/server.h"

namespace mohge {

void register_serve_commands(CLI::App& app) {
  auto* cmd = app.add_subcommand("serve", "OpenAI-compatible HTTP inference server (docs/SERVE.md)");
  static ServeOptions o;
  cmd->add_option("--checkpoint", o.checkpoint, "checkpoint or run directory")->required();
  cmd->add_option("--host", o.host, "address to listen on")->capture_default_str();
  cmd->add_option("--port", o.port, "port (0: any free one, printed)")->capture_default_str()->check(CLI::Range(0, 65535));
  cmd->add_option("--max-seqs", o.max_seqs, "sequences decoded together in one batch")->capture_default_str()->check(CLI::Range(1, 4096));
  cmd->add_option("--queue", o.queue, "requests waiting beyond the free sequences; more get 429")->capture_default_str()->check(CLI::Range(0, 65536));
  cmd->add_option("--drain-seconds", o.drain_seconds, "on SIGTERM, how long running requests may finish")->capture_default_str()->check(CLI::NonNegativeNumber);
  add_weights_dtype_option(cmd, o.weights_dtype);
  add_action(cmd, [] { serve(o); });
}

}  // namespace mohge
