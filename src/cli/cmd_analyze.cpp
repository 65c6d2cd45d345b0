// defines: mohge analyze
#include "cli/commands.h"

namespace mohge {

void register_analyze_commands(CLI::App&) {}

}  // namespace mohge
