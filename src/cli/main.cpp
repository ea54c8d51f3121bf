// retort: one binary, one subcommand per job. This file only wires the subcommands together and
// turns errors into exit codes; each subcommand is in cmd_<name>.cpp.
#include <cstdio>

#include "build_info.h"
#include "cli/commands.h"
#include "util/error.h"
#include "util/log.h"

namespace retort::cli {
namespace {
int g_exit_code = 0;
}
void set_exit_code(int code) { g_exit_code = code; }
}  // namespace retort::cli

int main(int argc, char** argv) {
  using namespace retort;
  CLI::App app{"retort: run, serve, quantize and distill DeepSeek-R1-Distill models on your own hardware"};
  app.set_version_flag("--version", std::string("retort ") + RETORT_VERSION + " (" + RETORT_BUILD_TYPE +
                                        ", " + RETORT_COMPILER + ")");
  bool verbose = false;
  app.add_flag("-v,--verbose", verbose, "Log debug details to stderr");
  app.require_subcommand(1);
  app.fallthrough();

  cli::add_doctor_command(app);
  cli::add_info_command(app);
  cli::add_tokenize_command(app);
  cli::add_logits_command(app);
  cli::add_run_command(app);
  cli::add_chat_command(app);
  cli::add_init_command(app);
  cli::add_convert_command(app);
  cli::add_eval_command(app);
  cli::add_train_command(app);
  cli::add_distill_command(app);
  cli::add_pipeline_command(app);
  cli::add_classify_command(app);
  cli::add_serve_command(app);

  app.parse_complete_callback([&] { init_logging(verbose); });
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& parse_error) {
    return app.exit(parse_error);
  } catch (const Error& error) {
    std::fprintf(stderr, "error: %s\n", error.what());
    return 1;
  } catch (const std::exception& error) {
    std::fprintf(stderr, "error: internal: %s (please report this)\n", error.what());
    return 2;
  }
  return cli::g_exit_code;
}
