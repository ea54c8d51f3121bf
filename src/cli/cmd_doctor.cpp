// Placeholder until the doctor work lands in this session; replaced, not kept.
#include "cli/commands.h"
#include "util/error.h"

namespace retort::cli {
void add_doctor_command(CLI::App& app) {
  auto* command = app.add_subcommand("doctor", "(in progress)");
  command->callback([] { fail(ErrorKind::Unsupported, "'doctor' is not built yet"); });
}
}  // namespace retort::cli
