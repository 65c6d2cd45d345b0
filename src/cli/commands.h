// defines: the registration functions of the CLI subcommands, run_selected
#pragma once
#include <CLI/CLI.hpp>
#include <functional>

#include "core/utf8.h"

namespace mohge {

// Each register_* adds its subcommands and stores the action to run in a callback; run_selected
// runs the one the user chose (parsing first, running after, so --help never does work).
void register_data_commands(CLI::App& app);   // data fetch | data prepare | tokenizer train
void register_train_commands(CLI::App& app);  // train
void register_eval_commands(CLI::App& app);   // eval
void register_infer_commands(CLI::App& app);  // generate | forward | grad
void register_analyze_commands(CLI::App& app);  // analyze
void register_serve_commands(CLI::App& app);    // serve
void add_action(CLI::App* sub, std::function<void()> action);
void set_exit_status(int status);  // what the process exits with when the action returns (default 0)
int run_selected(CLI::App& app);   // the exit status
// --backend NAME on the commands that run a checkpoint (backend_names(): cpu | cuda), default cpu;
// a backend that cannot run here is refused when the command runs, with the reason.
void add_backend_option(CLI::App* sub, std::string& name);
// --weights-dtype fp32|bf16 of the commands that run a checkpoint (model_load_inference)
void add_weights_dtype_option(CLI::App* sub, std::string& dtype);
// --replace-invalid-utf8, the same flag on every command that reads text (core/utf8.h)
inline constexpr const char* kReplaceInvalidUtf8Help =
    "replace invalid UTF-8 in the input with U+FFFD instead of refusing it";
inline InvalidUtf8 invalid_utf8_policy(bool replace) { return replace ? InvalidUtf8::replace : InvalidUtf8::refuse; }

}  // namespace mohge
