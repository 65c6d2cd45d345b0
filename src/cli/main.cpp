// defines: main — the `mohge` command: data, tokenizer, train, eval, generate, serve, forward, grad
// Every subcommand lives in its own cli/cmd_*.cpp and registers itself here. Errors from any layer
// arrive as mohge::Error and leave as one line on stderr with exit code 1.
#include <CLI/CLI.hpp>
#include <algorithm>

#include "cli/commands.h"
#include "core/error.h"
#include "core/signals.h"

int main(int argc, char** argv) {
  mohge::signals_take_over();  // before any thread exists: no signal handler on a compute thread
  CLI::App app{"mohge: train, evaluate and run heterogeneous mixture-of-experts language models"};
  app.require_subcommand(1);
  app.set_help_all_flag("--help-all", "help for every subcommand");
  mohge::register_data_commands(app);
  mohge::register_train_commands(app);
  mohge::register_eval_commands(app);
  mohge::register_infer_commands(app);
  mohge::register_analyze_commands(app);
  mohge::register_serve_commands(app);
  // CLI11 reports an unknown command word as "A subcommand is required": name it instead
  const CLI::App* cur = &app;
  for (int i = 1; i < argc && argv[i][0] != '-'; i++) {
    const auto subs = cur->get_subcommands([](const CLI::App*) { return true; });
    auto it = std::find_if(subs.begin(), subs.end(), [&](const CLI::App* s) { return s->get_name() == argv[i]; });
    if (it == subs.end() && cur->get_require_subcommand_min() > 0) {
      std::string known;
      for (const CLI::App* s : subs) known += (known.empty() ? "" : ", ") + s->get_name();
      fmt::print(stderr, "error: unknown command '{}' (commands: {})\n", argv[i], known);
      return 1;
    }
    if (it == subs.end()) break;
    cur = *it;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --help-all
    // bad flags: one line like every other error (CLI11's own format is two lines, no "error:")
    std::string msg = e.what();
    for (char& ch : msg)
      if (ch == '\n') ch = ' ';
    fmt::print(stderr, "error: {} (see --help)\n", mohge::single_line(msg));
    return e.get_exit_code();
  }
  try {
    return mohge::run_selected(app);
  } catch (const mohge::Error& e) {
    fmt::print(stderr, "error: {}\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    fmt::print(stderr, "error: {}\n", mohge::single_line(e.what()));
    return 1;
  }
  return 0;
}
