// defines: add_action, run_selected — deferred subcommand actions; add_backend_option,
//          add_weights_dtype_option
#include <map>

#include "cli/commands.h"
#include "kernels/backend.h"

namespace mohge {

static std::map<CLI::App*, std::function<void()>>& actions() {
  static std::map<CLI::App*, std::function<void()>> a;
  return a;
}

static int& exit_status() {
  static int status = 0;
  return status;
}

void add_action(CLI::App* sub, std::function<void()> action) { actions()[sub] = std::move(action); }

void add_backend_option(CLI::App* sub, std::string& name) {
  sub->add_option("--backend", name, "compute backend")
      ->capture_default_str()
      ->check(CLI::IsMember(backend_names()));
}

void add_weights_dtype_option(CLI::App* sub, std::string& dtype) {
  sub->add_option("--weights-dtype", dtype,
                  "weights and matmul precision: fp32 | bf16 (converted at load; bf16 needs AVX512-BF16); "
                  "default: the checkpoint's")
      ->check(CLI::IsMember({"fp32", "bf16"}));
}

void set_exit_status(int status) { exit_status() = status; }

int run_selected(CLI::App& app) {
  CLI::App* cur = &app;
  while (!cur->get_subcommands().empty()) cur = cur->get_subcommands().front();
  actions().at(cur)();
  return exit_status();
}

}  // namespace mohge
