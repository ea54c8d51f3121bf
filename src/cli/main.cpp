// retort: one binary, one subcommand per job. This file only wires the subcommands together and
// turns errors into exit codes; each subcommand is in cmd_<name>.cpp.
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <system_error>

#include "build_info.h"
#include "cli/commands.h"
#include "util/error.h"
#include "util/input_limits.h"
#include "util/log.h"

namespace retort::cli {
namespace {
int g_exit_code = 0;

// CLI11 answers a mistyped subcommand with "A subcommand is required"; say what was wrong and
// list the subcommands instead. The root takes only flags, so the first word that is not one is
// the subcommand. Empty when the command line is fine (or for CLI11 to explain).
std::string unknown_subcommand_message(const CLI::App& app, int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string word = argv[i];
    if (word.empty() || word[0] == '-') continue;
    std::string names;
    for (const CLI::App* command : app.get_subcommands({})) {
      if (command->get_name() == word) return {};
      names += (names.empty() ? "" : ", ") + command->get_name();
    }
    return "unknown subcommand '" + echo_excerpt(word, 60) + "'; the subcommands are: " + names +
           " (retort --help describes them)";
  }
  return {};
}

// Output lost to a full disk or a closed pipe must not look like success.
int check_stdout(int code) {
  errno = 0;
  if (std::fflush(stdout) == 0 && !std::ferror(stdout)) return code;
  std::fprintf(stderr, "error: could not write all output to standard output (%s); check where it goes "
               "(a full disk, a closed pipe)\n", errno != 0 ? std::strerror(errno) : "write error");
  return code != 0 ? code : 1;
}
}  // namespace
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
  cli::add_bench_command(app);
  cli::add_tune_command(app);

  app.parse_complete_callback([&] { init_logging(verbose); });
  if (const std::string message = cli::unknown_subcommand_message(app, argc, argv); !message.empty()) {
    std::fprintf(stderr, "error: %s\n", message.c_str());
    return 1;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& parse_error) {
    return app.exit(parse_error);
  } catch (const Error& error) {
    std::fprintf(stderr, "error: %s\n", error.what());
    return 1;
  } catch (const std::filesystem::filesystem_error& error) {
    // The operating system refused a file operation (permissions, a read-only or full disk).
    std::fprintf(stderr, "error: %s; check the path, its permissions and free space\n", error.what());
    return 1;
  } catch (const std::system_error& error) {
    // In practice a thread the system would not start (a thread, process or memory limit).
    std::fprintf(stderr, "error: the system refused: %s; if a limit on threads or memory applies (ulimit -u, "
                 "a container's pids.max), use fewer threads (-t/--threads)\n", error.what());
    return 1;
  } catch (const std::exception& error) {
    std::fprintf(stderr, "error: internal: %s (please report this)\n", error.what());
    return 2;
  }
  return cli::check_stdout(cli::g_exit_code);
}
