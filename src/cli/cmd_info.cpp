// Placeholder until the info work lands in this session; replaced, not kept.
#include "cli/commands.h"
#include "util/error.h"

namespace retort::cli {
void add_info_command(CLI::App& app) {
  auto* command = app.add_subcommand("info", "(in progress)");
  command->callback([] { fail(ErrorKind::Unsupported, "'info' is not built yet"); });
}
}  // namespace retort::cli
