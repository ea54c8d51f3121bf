// `retort tune serve MODEL --target-p99-ms MS`: the serving setting (threads, parallel slots,
// batch tokens, KV type) with the most output tokens/s whose end-to-end request latency p99 meets
// the target, measured on real `retort serve` children (server/serve_tuning_run). Progress on
// stderr, the table on stdout and in DIR/tune.md, the winner in DIR/best-serve.yaml.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <thread>

#include "cli/commands.h"
#include "cli/flag_checks.h"
#include "eval/serve_bench.h"
#include "model/kv_cache.h"
#include "server/serve_tuning_run.h"
#include "util/child_process.h"
#include "util/error.h"
#include "util/log.h"
#include "util/mapped_file.h"
#include "util/output_path.h"

namespace retort::cli {
namespace {

struct TuneServeCommand {
  server::TuneServeOptions tune;
  std::string prompt_file;
  std::string template_name;
  int64_t context = 0;  // 0: the server's default
  ServeSearchSpace space;  // a dimension left empty takes the machine's default
};

void check_tune_serve_flags(const TuneServeCommand& command) {
  const server::TuneServeOptions& tune = command.tune;
  require(std::isfinite(tune.target_p99_ms) && tune.target_p99_ms > 0, ErrorKind::InvalidInput,
          "--target-p99-ms must be a latency above 0 ms (the end-to-end p99 a setting must meet), got {}",
          tune.target_p99_ms);
  require(std::filesystem::exists(tune.model_path), ErrorKind::NotFound,
          "model path '{}' does not exist; pass an HF checkpoint directory or a GGUF file", tune.model_path);
  for (const std::string& kv_type : command.space.kv_types) kv_cache_type(kv_type);  // throws naming the choices
  check_output_directory(tune.out_dir, ExistingContents::Allow, {tune.model_path}, "--out");
  for (const char* name : {"tune.md", "best-serve.yaml"})
    check_output_file((std::filesystem::path(tune.out_dir) / name).string(), {tune.model_path}, "--out");
}

// The machine's default for every dimension the user did not list.
ServeSearchSpace search_space(const TuneServeCommand& command) {
  const int hardware_threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  ServeSearchSpace space = default_serve_search_space(hardware_threads, command.tune.clients);
  const ServeSearchSpace& given = command.space;
  if (!given.threads.empty()) space.threads = given.threads;
  if (!given.parallel.empty()) space.parallel = given.parallel;
  if (!given.batch_tokens.empty()) space.batch_tokens = given.batch_tokens;
  if (!given.kv_types.empty()) space.kv_types = given.kv_types;
  return space;
}

void print_progress(const std::string& line) { spdlog::info("tune serve: {}", line); }

void run_tune_serve(TuneServeCommand& command) {
  check_tune_serve_flags(command);
  server::TuneServeOptions& tune = command.tune;
  tune.retort_binary = std::filesystem::read_symlink("/proc/self/exe").string();
  tune.prompts = command.prompt_file.empty()
                     ? builtin_bench_prompts()
                     : parse_bench_prompts(read_text_file(command.prompt_file), command.prompt_file);
  tune.space = search_space(command);
  if (!command.template_name.empty()) tune.fixed_flags.emplace_back("template", command.template_name);
  if (command.context > 0) tune.fixed_flags.emplace_back("ctx", std::to_string(command.context));
  stop_children_on_termination_signals();  // Ctrl-C stops the trial's server before retort ends
  const server::TuneServeResult result = server::tune_serving(tune, print_progress);
  std::fputs("\n", stdout);
  std::fputs(result.table_markdown.c_str(), stdout);
  if (result.best_yaml_path.empty()) {
    std::fprintf(stderr, "error: no setting met end-to-end p99 <= %g ms at %d clients (the table is in %s/tune.md); "
                 "raise --target-p99-ms, or lower --clients or --max-tokens\n", tune.target_p99_ms, tune.clients,
                 tune.out_dir.c_str());
    set_exit_code(1);
    return;
  }
  spdlog::info("tune serve: table in {}/tune.md; serve the best setting with: retort serve --config {}", tune.out_dir,
               result.best_yaml_path);
}

}  // namespace

void add_tune_serve_command(CLI::App& tune) {
  auto command = std::make_shared<TuneServeCommand>();
  server::TuneServeOptions& o = command->tune;
  o.out_dir = "runs/tune-serve";
  o.time_limit_seconds = 1200;
  auto* serve = tune.add_subcommand(
      "serve", "Search threads, --parallel, --batch-tokens and --kv-type of `retort serve` on real servers under a "
               "generated load: the most output tok/s whose end-to-end request latency p99 meets --target-p99-ms");
  serve->add_option("model", o.model_path, "HF checkpoint directory or GGUF file to serve")->required();
  serve->add_option("--target-p99-ms", o.target_p99_ms, "End-to-end request latency p99 a setting must meet (ms)")
      ->required();
  serve->add_option("--clients", o.clients, "Concurrent streaming clients of the load")
      ->check(integer_in(1, 1024))->capture_default_str();
  serve->add_option("--requests", o.requests, "Requests per trial (0: 4 × clients)")
      ->check(integer_in(0, 1000000))->capture_default_str();
  serve->add_option("--max-tokens", o.max_tokens, "max_tokens of each request")
      ->check(integer_in(1, 1000000))->capture_default_str();
  serve->add_option("--prompt-file", command->prompt_file,
                    "Prompts, one per line or JSON Lines with \"prompt\" (default: bench serve's built-in set)");
  serve->add_option("--timeout-s", o.request_timeout_seconds, "Longest wait for one request (it fails after)")
      ->check(number_in(0.1, 86400))->capture_default_str();
  serve->add_option("--threads", command->space.threads, "Thread counts to try (default 1, 2, 4, ... up to the "
                                                         "hardware threads)")
      ->delimiter(',')->check(integer_in(1, 1024));
  serve->add_option("--parallel", command->space.parallel, "Parallel slots to try (default 1, 4, 8, 16, ... up to "
                                                           "--clients)")
      ->delimiter(',')->check(integer_in(1, 1024));
  serve->add_option("--batch-tokens", command->space.batch_tokens, "Batch tokens to try (default 256,512,1024)")
      ->delimiter(',')->check(integer_in(1, 1 << 20));
  serve->add_option("--kv-type", command->space.kv_types, "KV cache types to try (default f16,q8,f32)")->delimiter(',');
  serve->add_option("--template", command->template_name, "Chat template of every trial's server (default: the "
                                                          "tokenizer's)");
  serve->add_option("--ctx", command->context, "Context of every trial's server (default: serve's)")
      ->check(integer_in(1, 1 << 24));
  serve->add_option("--max-trials", o.max_trials, "Most server settings to measure")
      ->check(integer_in(1, 10000))->capture_default_str();
  serve->add_option("--time-limit-s", o.time_limit_seconds,
                    "No trial starts after this many seconds, and a running one is cut off (0: no limit)")
      ->check(number_in(0, 365 * 86400.0))->capture_default_str();
  serve->add_option("--startup-timeout-s", o.startup_timeout_seconds, "Longest wait for a trial's server to load")
      ->check(number_in(1, 86400))->capture_default_str();
  serve->add_option("--out", o.out_dir, "Directory for tune.md, best-serve.yaml and each trial's server log")
      ->capture_default_str();
  serve->callback([command] { run_tune_serve(*command); });
}

}  // namespace retort::cli
