// defines: add_action, run_selected — deferred subcommand actions
#include <map>

#include "cli/commands.h"

namespace mohge {

static std::map<CLI::App*, std::function<void()>>& actions() {
  static std::map<CLI::App*, std::function<void()>> a;
  return a;
}

void add_action(CLI::App* sub, std::function<void()> action) { actions()[sub] = std::move(action); }

void run_selected(CLI::App& app) {
  CLI::App* cur = &app;
  while (!cur->get_subcommands().empty()) cur = cur->get_subcommands().front();
  actions().at(cur)();
}

}  // namespace mohge
