// `retort serve MODEL`: the OpenAI-compatible HTTP server. Flags (or --config serve.yaml) become
// ServerOptions and SchedulerOptions; the work is in src/server/ and src/engine/scheduler.
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <future>
#include <optional>
#include <thread>

#include <pthread.h>

#include "cli/commands.h"
#include "cli/flag_checks.h"
#include "cli/model_session.h"
#include "cli/yaml_config.h"
#include "engine/chat_prompt.h"
#include "engine/scheduler.h"
#include "server/http_server.h"
#include "util/error.h"
#include "util/log.h"
#include "util/mapped_file.h"
#include "util/text.h"

namespace retort::cli {

namespace {

struct ServeOptions {
  ModelOptions model;
  server::ServerOptions server;
  SchedulerOptions scheduler;
  DraftOptions draft;
  int64_t kv_tokens = 0;  // 0: max(16384, ctx)
  std::vector<std::string> api_key_files;
  std::string template_name;
  std::string config_path;
  bool no_web_ui = false;
};

std::vector<std::string> read_api_keys(const std::vector<std::string>& files) {
  std::vector<std::string> keys;
  for (const auto& file : files) {
    const std::string key{trim_ascii_whitespace(read_text_file(file))};
    require(!key.empty(), ErrorKind::InvalidInput, "the API key file '{}' is empty; put the key on its first line", file);
    require(key.find('\n') == std::string::npos, ErrorKind::InvalidInput,
            "the API key file '{}' holds more than one line; put one key in it", file);
    keys.push_back(key);
  }
  return keys;
}

std::string default_model_name(const std::string& path) {
  std::filesystem::path p(path);
  if (p.filename().empty()) p = p.parent_path();
  return p.has_extension() && p.extension() == ".gguf" ? p.stem().string() : p.filename().string();
}

// SIGINT/SIGTERM are blocked in every thread and taken by sigwait in main, so the shutdown runs as
// ordinary code rather than inside a signal handler.
sigset_t block_shutdown_signals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);  // a vanished client must not kill the server
  return signals;
}

// The model, its shared KV cache and the scheduler that steps it.
struct ServingEngine {
  ModelSession session;
  std::unique_ptr<Scheduler> scheduler;
  server::ServingModel serving;
};

ServingEngine load_engine(ServeOptions& options) {
  ServingEngine engine;
  const int64_t context = options.model.context;
  options.model.context = 16;  // the session's own cache is replaced by the shared pool below
  engine.session = open_model_session(options.model, true);
  ModelSession& session = engine.session;
  const int64_t kv_tokens = options.kv_tokens > 0 ? options.kv_tokens : std::max<int64_t>(16384, context);
  require(kv_tokens >= context, ErrorKind::InvalidInput,
          "--kv-tokens ({}) must hold at least one full context (--ctx {})", kv_tokens, context);
  session.cache.reset();
  session.cache = std::make_unique<KvCache>(session.model->config, kv_tokens, KvCache::kDefaultBlockSize,
                                            kv_cache_type(options.model.kv_type));
  options.scheduler.context = std::min(context, session.model->config.max_positions);
  // The draft's cache holds every running sequence's tokens too, at the draft's (smaller) width.
  open_draft(session, options.draft, options.model, kv_tokens);
  options.scheduler.drafter = session.drafter.get();
  engine.scheduler = std::make_unique<Scheduler>(session.transformer(), *session.cache, session.require_tokenizer(),
                                                 options.scheduler);
  // A model without a chat template still serves /v1/completions; chat requests then get a 400.
  std::optional<ChatTemplateKind> chat_template;
  try {
    chat_template = resolve_chat_template(session.require_tokenizer(), options.template_name);
  } catch (const Error& error) {
    if (!options.template_name.empty()) throw;
    spdlog::warn("{}; /v1/chat/completions is off until the server is started with --template", error.what());
  }
  engine.serving = {engine.scheduler.get(), session.tokenizer.get(), chat_template,
                    default_model_name(options.model.model_path)};
  return engine;
}

void serve(ServeOptions& options) {
  const sigset_t signals = block_shutdown_signals();
  for (auto& key : read_api_keys(options.api_key_files)) options.server.api_keys.push_back(key);
  for (const auto& key : options.server.api_keys) {
    require(!key.empty(), ErrorKind::InvalidInput, "an empty --api-key would let anyone in; give a real key");
  }
  options.server.web_ui = !options.no_web_ui;
  if (options.server.http_threads <= 0) {
    options.server.http_threads = options.scheduler.max_running + options.scheduler.max_queued + 8;
  }
  if (options.server.host != "127.0.0.1" && options.server.host != "localhost" && options.server.host != "::1" &&
      options.server.api_keys.empty()) {
    spdlog::warn("listening on {} without an API key: anyone who can reach this address can use the model",
                 options.server.host);
  }

  server::HttpServer http(options.server);
  const int port = http.bind();
  std::promise<void> http_done;
  std::thread http_thread([&] {
    http.serve();
    http_done.set_value();
  });
  http.wait_until_serving();
  std::printf("retort serve: listening on http://%s:%d (loading the model)\n", options.server.host.c_str(), port);
  std::fflush(stdout);

  ServingEngine engine;
  try {
    engine = load_engine(options);
    http.attach(engine.serving);
    std::printf("retort serve: ready on http://%s:%d (context %lld, %d parallel, KV cache %lld tokens = %.0f MiB, "
                "template %s)\n",
                options.server.host.c_str(), port, static_cast<long long>(engine.scheduler->context()),
                options.scheduler.max_running, static_cast<long long>(engine.session.cache->capacity_tokens()),
                engine.session.cache->bytes() / 1048576.0,
                engine.serving.chat_template ? std::string(chat_template_name(*engine.serving.chat_template)).c_str()
                                             : "none");
    std::fflush(stdout);
  } catch (...) {
    http.stop();
    http_thread.join();
    throw;
  }

  int signal_number = 0;
  sigwait(&signals, &signal_number);
  std::printf("retort serve: %s received, finishing in-flight requests (up to %.0f s)\n",
              signal_number == SIGINT ? "SIGINT" : "SIGTERM", options.server.shutdown_grace_seconds);
  std::fflush(stdout);
  http.begin_shutdown();
  engine.scheduler->shutdown(std::chrono::milliseconds(static_cast<int64_t>(options.server.shutdown_grace_seconds * 1000)));
  // Give the HTTP threads a moment to write the last events of the requests that just ended.
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  http.stop();
  // httplib joins its threads only after idle keep-alive connections time out; nothing is in
  // flight any more, so do not make the operator wait for them.
  if (http_done.get_future().wait_for(std::chrono::seconds(2)) != std::future_status::ready) {
    std::printf("retort serve: stopped (idle keep-alive connections closed)\n");
    std::fflush(stdout);
    std::fflush(stderr);
    std::_Exit(0);
  }
  http_thread.join();
  std::printf("retort serve: stopped\n");
}

}  // namespace

void add_serve_command(CLI::App& app) {
  auto options = std::make_shared<ServeOptions>();
  auto* command = app.add_subcommand("serve", "Serve the model over an OpenAI-compatible HTTP API with continuous batching");
  ServeOptions& o = *options;
  o.model.kv_type = "f16";  // llama.cpp's default too; --kv-type f32 for exact
  o.model.act_type = "bf16";  // llama.cpp does the same for bf16 files; --act-type f32 for exact
  add_model_options(*command, o.model);
  command->get_option("MODEL")->required(false);  // may come from --config
  command->add_option("--config", o.config_path, "Read flags from a YAML file (keys are flag names; flags given here win)");
  command->add_option("--host", o.server.host, "Address to listen on")->capture_default_str();
  command->add_option("--port", o.server.port, "Port (0: any free port)")
      ->check(integer_in(0, 65535, "0 = any free port"))
      ->capture_default_str();
  command->add_option("--api-key", o.server.api_keys, "Require 'Authorization: Bearer KEY' (repeatable)");
  command->add_option("--api-key-file", o.api_key_files, "Read an API key from this file (repeatable)");
  command->add_option("--model-name", o.server.model_name, "Model id clients use (default: the file or folder name)");
  command->add_option("--template", o.template_name, "Chat template (default: the tokenizer's)");
  command->add_option("--parallel", o.scheduler.max_running, "Sequences decoded together")->capture_default_str();
  command->add_option("--queue", o.scheduler.max_queued, "Requests waiting for a slot before 429")->capture_default_str();
  command->add_option("--batch-tokens", o.scheduler.max_batch_tokens, "Most tokens in one batched forward")
      ->capture_default_str();
  o.scheduler.prefix_cache = true;
  command->add_flag("--prefix-cache,!--no-prefix-cache", o.scheduler.prefix_cache,
                    "Reuse the KV cache of earlier requests' shared prompt prefixes (default on)");
  add_draft_options(*command, o.draft);
  command->add_option("--kv-tokens", o.kv_tokens, "KV cache positions shared by all sequences (default max(16384, ctx))");
  command->add_option("--max-tokens-cap", o.server.limits.max_tokens_cap, "Largest max_tokens a request may ask for")
      ->capture_default_str();
  command->add_option("--max-body", o.server.max_body_bytes, "Largest request body in bytes")
      ->check(integer_in(1, int64_t{1} << 40))
      ->capture_default_str();
  command->add_option("--timeout", o.server.request_timeout_seconds, "Seconds a request may generate (0: no limit)")
      ->check(number_in(0, 1e9, "0 = no limit"))
      ->capture_default_str();
  command->add_option("--cors", o.server.cors_origin, "Allow browser requests from this origin ('*' for any); off by default");
  command->add_flag("--reasoning-inline", o.server.reasoning_inline,
                    "Keep <think>…</think> in content instead of reasoning_content");
  command->add_option("--http-threads", o.server.http_threads, "Connection threads kept ready (default parallel + queue + 8); more start, up to 1024, while idle or slow connections hold them")
      ->check(integer_at_least(0, "0 = the default"));
  command->add_option("--shutdown-grace", o.server.shutdown_grace_seconds,
                      "Seconds in-flight requests may finish after SIGTERM/SIGINT")
      ->capture_default_str();
  command->add_option("--access-log", o.server.access_log, "JSON access log file ('-': stderr, '': off)")
      ->capture_default_str();
  command->add_flag("--no-web-ui", o.no_web_ui, "Do not serve the chat page at /");
  SamplingParams& sampling = o.server.limits.default_sampling;
  command->add_option("--temperature", sampling.temperature, "Default temperature for requests that set none")
      ->check(number_in(0, 2, "0 = greedy"))
      ->capture_default_str();
  command->add_option("--top-p", sampling.top_p, "Default top_p for requests that set none")->capture_default_str();
  command->callback([options, command] {
    if (!options->config_path.empty()) apply_yaml_config(*command, options->config_path);
    require(!options->model.model_path.empty(), ErrorKind::InvalidInput,
            "no model given; pass MODEL (a GGUF file or a Hugging Face folder) or 'model:' in --config");
    serve(*options);
  });
}

}  // namespace retort::cli
