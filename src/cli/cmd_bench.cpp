// `retort bench MODEL [MODEL ...]`: the offline speed figures of each model (eval/offline_bench).
// `retort bench serve --url URL`: the online figures of a running OpenAI-compatible server
// (server/load_driver, eval/serve_bench). Both print progress on stderr and end with a Markdown
// table on stdout.
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/flag_checks.h"
#include "eval/offline_bench.h"
#include "eval/serve_bench.h"
#include "server/load_driver.h"
#include "util/atomic_file.h"
#include "util/error.h"
#include "util/mapped_file.h"
#include "util/output_path.h"

namespace retort::cli {
namespace {

void print_progress(const std::string& line) {
  std::fprintf(stderr, "retort bench: %s\n", line.c_str());
  std::fflush(stderr);
}

struct OfflineCommand {
  std::vector<std::string> models;
  OfflineBenchOptions bench;
  std::string kv_type = "f16";    // what `retort run` uses
  std::string act_type = "bf16";
  std::string json;
};

void run_offline_bench(OfflineCommand& command) {
  require(!command.models.empty(), ErrorKind::InvalidInput,
          "retort bench needs one or more MODEL paths (HF checkpoint directories or GGUF files), or the form "
          "`retort bench serve --url URL` for a running server");
  for (const std::string& model : command.models)  // before minutes spent on the models before it
    require(std::filesystem::exists(model), ErrorKind::NotFound,
            "model path '{}' does not exist; pass HF checkpoint directories or GGUF files", model);
  command.bench.kv_type = kv_cache_type(command.kv_type);
  command.bench.activation = activation_precision(command.act_type);
  if (!command.json.empty()) check_output_file(command.json, command.models, "--json");
  std::vector<ModelBenchFigures> figures;
  for (size_t i = 0; i < command.models.size(); ++i) {
    const std::string label = std::to_string(i + 1) + "/" + std::to_string(command.models.size());
    OfflineBenchObserver observer;
    observer.progress = [&](const std::string& line) { print_progress("[" + label + "] " + line); };
    figures.push_back(bench_model_file(command.models[i], command.bench, observer));
  }
  std::fputs(offline_bench_markdown(figures, command.bench).c_str(), stdout);
  if (!command.json.empty()) {
    write_file_atomically(command.json, offline_bench_json(figures, command.bench));
    print_progress("wrote " + command.json);
  }
}

struct ServeCommand {
  server::LoadOptions load;
  std::string prompt_file;
  std::string out = "bench-serve";
};

void run_serve_bench(ServeCommand& command) {
  command.load.prompts = command.prompt_file.empty()
                             ? builtin_bench_prompts()
                             : parse_bench_prompts(read_text_file(command.prompt_file), command.prompt_file);
  server::parse_bench_target(command.load.url, command.load.allow_remote);  // refuse before touching --out
  check_output_directory(command.out, ExistingContents::Allow, {}, "--out");
  const auto path = [&](const char* name) { return (std::filesystem::path(command.out) / name).string(); };
  for (const char* name : {"bench.json", "bench.md", "bench.svg"}) check_output_file(path(name), {}, "--out");

  const ServeBenchReport report = server::run_serve_bench(command.load, print_progress);
  const std::string markdown = serve_bench_markdown(report);
  std::fputs(markdown.c_str(), stdout);
  std::filesystem::create_directories(command.out);
  write_file_atomically(path("bench.json"), serve_bench_json(report));
  write_file_atomically(path("bench.md"), markdown);
  write_file_atomically(path("bench.svg"), serve_bench_svg(report));
  print_progress("wrote bench.json, bench.md and bench.svg in " + command.out);
  // An incomplete run is not a result to compare against another: the exit says so.
  if (const int64_t failed = failed_requests(report); failed > 0) {
    std::fprintf(stderr, "error: %lld requests failed (the errors are listed under the table and in bench.json); "
                 "check that the server at %s is up and answers /v1/chat/completions\n",
                 static_cast<long long>(failed), command.load.url.c_str());
    set_exit_code(1);
  }
  if (const int64_t unsent = unsent_requests(report); unsent > 0) {
    std::fprintf(stderr, "error: %lld planned requests were not sent because --time-limit-s ran out; raise it or "
                 "lower --requests\n", static_cast<long long>(unsent));
    set_exit_code(1);
  }
}

void add_serve_bench_command(CLI::App& bench) {
  auto command = std::make_shared<ServeCommand>();
  server::LoadOptions& load = command->load;
  auto* serve = bench.add_subcommand("serve", "Drive a running OpenAI-compatible server with concurrent streaming "
                                              "chat requests: TTFT, inter-token and end-to-end latency, throughput");
  serve->add_option("--url", load.url, "The server's base URL, e.g. http://127.0.0.1:8080 (loopback unless "
                                       "--allow-remote)")->required();
  serve->add_option("--model", load.model, "The model name to send (default: the first the server lists)");
  serve->add_option("--clients", load.clients, "Concurrency levels, comma-separated")
      ->delimiter(',')->check(integer_in(1, 1024))->capture_default_str();
  serve->add_option("--requests", load.requests_per_level, "Requests at each level (0: 4 × clients)")
      ->check(integer_in(0, 1000000))->capture_default_str();
  serve->add_option("--max-tokens", load.max_tokens, "max_tokens of each request")
      ->check(integer_in(1, 1000000))->capture_default_str();
  serve->add_option("--prompt-file", command->prompt_file,
                    "Prompts, one per line or JSON Lines with \"prompt\" (default: a built-in short set)");
  serve->add_option("--api-key", load.api_key, "Sent as Authorization: Bearer KEY");
  serve->add_option("--timeout-s", load.request_timeout_seconds, "Longest wait for one request")
      ->check(number_in(0.1, 86400))->capture_default_str();
  serve->add_option("--time-limit-s", load.time_limit_seconds, "Longest time for the whole run")
      ->check(number_in(1, 7 * 86400))->capture_default_str();
  serve->add_option("--out", command->out, "Directory for bench.json, bench.md and bench.svg")->capture_default_str();
  serve->add_flag("--allow-remote", load.allow_remote, "Allow a --url host other than this machine (your own server)");
  serve->callback([command] { run_serve_bench(*command); });
}

}  // namespace

void add_bench_command(CLI::App& app) {
  auto command = std::make_shared<OfflineCommand>();
  OfflineBenchOptions& bench = command->bench;
  auto* offline = app.add_subcommand("bench", "Measure speed: prefill, decode at depths, batched decode, bandwidth "
                                              "roofline and RSS of models; or `bench serve` for a running server");
  offline->require_subcommand(0, 1);
  offline->add_option("models", command->models, "HF checkpoint directories or GGUF files");
  offline->add_option("--prompt", bench.prompt_tokens, "Prefill length, and the context of each batched sequence")
      ->check(integer_in(1, 1 << 20))->capture_default_str();
  offline->add_option("--decode", bench.decode_tokens, "Decode steps at each depth and batch size")
      ->check(integer_in(1, 1 << 20))->capture_default_str();
  offline->add_option("--depth", bench.depths, "Positions already in the KV cache when decode starts")
      ->delimiter(',')->check(integer_in(0, 1 << 24))->capture_default_str();
  offline->add_option("--batch", bench.batches, "Batch sizes of batched decode")
      ->delimiter(',')->check(integer_in(1, 4096))->capture_default_str();
  offline->add_option("--threads", bench.threads, "Thread counts")
      ->delimiter(',')->check(integer_in(1, 1024))->capture_default_str();
  offline->add_option("--reps", bench.reps, "Repetitions of each measurement (min, median, max reported)")
      ->check(integer_in(1, 1000))->capture_default_str();
  offline->add_option("--kv-type", command->kv_type, "KV cache type: f16, f32 or q8")->capture_default_str();
  offline->add_option("--act-type", command->act_type, "Activations meeting bf16 weights: bf16 or f32")
      ->capture_default_str();
  offline->add_option("--probe-mib", bench.probe_mib, "Buffer of the bandwidth probe (larger than the caches)")
      ->check(integer_in(1, 1 << 20))->capture_default_str();
  offline->add_option("--json", command->json, "Also write the figures as JSON to this file");
  add_serve_bench_command(*offline);
  offline->callback([command, offline] {
    if (offline->get_subcommands().empty()) run_offline_bench(*command);
  });
}

}  // namespace retort::cli
