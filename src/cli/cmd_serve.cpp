// `retort serve MODEL` (or `--model NAME=PATH`, repeatable): the OpenAI-compatible HTTP server.
// Flags (or --config serve.yaml) become ServerOptions and SchedulerOptions; the work is in
// src/server/ and src/engine/scheduler. Several models each get their own session, KV cache and
// scheduler, with the same options; they share the kernels' thread pool.
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
#include "server/served_models.h"
#include "util/error.h"
#include "util/log.h"
#include "util/mapped_file.h"
#include "util/text.h"

namespace retort::cli {

namespace {

struct ServeOptions {
  ModelOptions model;                    // model_path: the MODEL argument (may be empty)
  std::vector<std::string> model_specs;  // --model NAME=PATH
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

struct ModelToServe {
  std::string name;
  std::string path;
};

ModelToServe parse_model_spec(const std::string& spec) {
  const size_t equals = spec.find('=');
  require(equals != std::string::npos && equals > 0 && equals + 1 < spec.size(), ErrorKind::InvalidInput,
          "--model expects NAME=PATH (for example qwen=models/qwen.gguf), got '{}'", spec);
  return {spec.substr(0, equals), spec.substr(equals + 1)};
}

// The MODEL argument (named by --model-name or its file name) and then every --model NAME=PATH.
std::vector<ModelToServe> models_to_serve(const ServeOptions& options) {
  std::vector<ModelToServe> models;
  if (!options.model.model_path.empty()) {
    const std::string& name = options.server.model_name;
    models.push_back({name.empty() ? default_model_name(options.model.model_path) : name, options.model.model_path});
  } else {
    require(options.server.model_name.empty(), ErrorKind::InvalidInput,
            "--model-name names the MODEL argument, and none was given; with --model, write NAME=PATH");
  }
  for (const auto& spec : options.model_specs) models.push_back(parse_model_spec(spec));
  require(!models.empty(), ErrorKind::InvalidInput,
          "no model given; pass MODEL (a GGUF file or a Hugging Face folder), --model NAME=PATH, or 'model:' or "
          "'models:' in --config");
  std::vector<std::string> names;
  for (const auto& model : models) names.push_back(model.name);
  server::check_model_names(names);
  // A draft proposes tokens in its target's vocabulary: one draft cannot serve several targets.
  require(models.size() == 1 || options.draft.model_path.empty(), ErrorKind::InvalidInput,
          "--draft works with one served model, and {} are configured; serve the drafted model on its own",
          models.size());
  return models;
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

// A model, its shared KV cache and the scheduler that steps it.
struct ServingEngine {
  std::string name;
  SchedulerOptions scheduler_options;
  ModelSession session;
  std::unique_ptr<Scheduler> scheduler;
  server::ServingModel serving;
};

// The scheduler starts later, in start_engine(): opening a model resets the kernels' thread pool
// (set_thread_count), which must not happen under a scheduler that is already running.
std::unique_ptr<ServingEngine> open_engine(const ServeOptions& options, const ModelToServe& model) {
  auto engine = std::make_unique<ServingEngine>();
  engine->name = model.name;
  ModelOptions model_options = options.model;
  model_options.model_path = model.path;
  const int64_t context = model_options.context;
  model_options.context = 16;  // the session's own cache is replaced by the shared pool below
  engine->session = open_model_session(model_options, true);
  ModelSession& session = engine->session;
  const int64_t kv_tokens = options.kv_tokens > 0 ? options.kv_tokens : std::max<int64_t>(16384, context);
  require(kv_tokens >= context, ErrorKind::InvalidInput,
          "--kv-tokens ({}) must hold at least one full context (--ctx {})", kv_tokens, context);
  session.cache.reset();
  session.cache = std::make_unique<KvCache>(session.model->config, kv_tokens, KvCache::kDefaultBlockSize,
                                            kv_cache_type(model_options.kv_type));
  engine->scheduler_options = options.scheduler;
  engine->scheduler_options.context = std::min(context, session.model->config.max_positions);
  // The draft's cache holds every running sequence's tokens too, at the draft's (smaller) width.
  open_draft(session, options.draft, model_options, kv_tokens);
  engine->scheduler_options.drafter = session.drafter.get();
  return engine;
}

void start_engine(ServingEngine& engine, const std::string& template_name) {
  ModelSession& session = engine.session;
  engine.scheduler = std::make_unique<Scheduler>(session.transformer(), *session.cache, session.require_tokenizer(),
                                                 engine.scheduler_options);
  // A model without a chat template still serves /v1/completions; chat requests then get a 400.
  std::optional<ChatTemplateKind> chat_template;
  try {
    chat_template = resolve_chat_template(session.require_tokenizer(), template_name);
  } catch (const Error& error) {
    if (!template_name.empty()) throw;
    spdlog::warn("model '{}': {}; /v1/chat/completions is off for it until the server is started with --template",
                 engine.name, error.what());
  }
  engine.serving = {engine.scheduler.get(), session.tokenizer.get(), chat_template, engine.name};
}

std::vector<std::unique_ptr<ServingEngine>> load_engines(const ServeOptions& options,
                                                         const std::vector<ModelToServe>& models) {
  std::vector<std::unique_ptr<ServingEngine>> engines;
  for (const auto& model : models) {
    if (models.size() > 1) spdlog::info("loading model '{}' from {}", model.name, model.path);
    engines.push_back(open_engine(options, model));
  }
  for (auto& engine : engines) start_engine(*engine, options.template_name);
  return engines;
}

std::string_view template_label(const ServingEngine& engine) {
  return engine.serving.chat_template ? chat_template_name(*engine.serving.chat_template) : "none";
}

void print_ready(const ServeOptions& options, int port, const std::vector<std::unique_ptr<ServingEngine>>& engines) {
  const std::string& host = options.server.host;
  auto describe = [&](const ServingEngine& engine) {
    return fmt::format("context {}, {} parallel, KV cache {} tokens = {:.0f} MiB, template {}",
                       engine.scheduler->context(), options.scheduler.max_running,
                       engine.session.cache->capacity_tokens(), engine.session.cache->bytes() / 1048576.0,
                       template_label(engine));
  };
  if (engines.size() == 1) {
    std::printf("retort serve: ready on http://%s:%d (%s)\n", host.c_str(), port, describe(*engines[0]).c_str());
  } else {
    std::string names;
    for (const auto& engine : engines) {
      std::printf("retort serve: model '%s' (%s)\n", engine->name.c_str(), describe(*engine).c_str());
      names += (names.empty() ? "" : ", ") + engine->name;
    }
    std::printf("retort serve: ready on http://%s:%d (%zu models: %s)\n", host.c_str(), port, engines.size(),
                names.c_str());
  }
  std::fflush(stdout);
}

void serve(ServeOptions& options) {
  const std::vector<ModelToServe> models = models_to_serve(options);
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
  std::printf("retort serve: listening on http://%s:%d (loading the model%s)\n", options.server.host.c_str(), port,
              models.size() > 1 ? "s" : "");
  std::fflush(stdout);

  std::vector<std::unique_ptr<ServingEngine>> engines;
  try {
    engines = load_engines(options, models);
    std::vector<server::ServingModel> serving;
    for (const auto& engine : engines) serving.push_back(engine->serving);
    http.attach(std::move(serving));
    print_ready(options, port, engines);
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
  // One grace period for all models: each gets what is left of it (the others' requests keep
  // generating meanwhile).
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::milliseconds(static_cast<int64_t>(options.server.shutdown_grace_seconds * 1000));
  for (auto& engine : engines) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    engine->scheduler->shutdown(std::max(left, std::chrono::milliseconds(0)));
  }
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
  command->get_option("MODEL")->required(false);  // may come from --model or --config
  command->add_option("--model", o.model_specs,
                      "Serve this model as NAME (repeatable: several models; a request's \"model\" picks one)")
      ->type_name("NAME=PATH");
  command->add_option("--config", o.config_path, "Read flags from a YAML file (keys are flag names; flags given here win)");
  command->add_option("--host", o.server.host, "Address to listen on")->capture_default_str();
  command->add_option("--port", o.server.port, "Port (0: any free port)")
      ->check(integer_in(0, 65535, "0 = any free port"))
      ->capture_default_str();
  command->add_option("--api-key", o.server.api_keys, "Require 'Authorization: Bearer KEY' (repeatable)");
  command->add_option("--api-key-file", o.api_key_files, "Read an API key from this file (repeatable)");
  command->add_option("--model-name", o.server.model_name, "Model id clients use for MODEL (default: the file or folder name)");
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
    serve(*options);  // which models: models_to_serve()
  });
}

}  // namespace retort::cli
