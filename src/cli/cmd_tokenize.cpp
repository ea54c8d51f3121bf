// Placeholder until the tokenize work lands in this session; replaced, not kept.
#include "cli/commands.h"
#include "util/error.h"

namespace retort::cli {
void add_tokenize_command(CLI::App& app) {
  auto* command = app.add_subcommand("tokenize", "(in progress)");
  command->callback([] { fail(ErrorKind::Unsupported, "'tokenize' is not built yet"); });
}
}  // namespace retort::cli
