// `retort serve MODEL` (or `--model NAME=PATH`, repeatable): the OpenAI-compatible HTTP server.
// Flags (or --config serve.yaml) become ServerOptions and SchedulerOptions; the work is in
// src/server/ and src/engine/scheduler. Several models each get their own session, KV cache and
// scheduler, with the same options; they share the kernels' thread pool. With --max-memory they are
// loaded on first use and the least recently used idle ones unloaded to stay within the budget
// (server/model_residency.h); without it every model is loaded at start.
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
#include "model/model_footprint.h"
#include "server/http_server.h"
#include "server/model_residency.h"
#include "server/served_models.h"
#include "util/byte_size.h"
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
  std::string max_memory;  // --max-memory SIZE: load models on demand within it; empty: all at start
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

// A model, its shared KV cache and the scheduler that steps it. Destroyed in reverse: the scheduler
// stops before the model and cache it steps go.
struct ServingEngine : server::LoadedEngine {
  std::string name;
  SchedulerOptions scheduler_options;
  ModelSession session;
  std::unique_ptr<Scheduler> scheduler;
  server::ServingModel serving_model;

  const server::ServingModel& serving() const override { return serving_model; }
};

// Positions of the KV pool each model's sequences share.
int64_t kv_pool_tokens(const ServeOptions& options) {
  const int64_t context = options.model.context;
  const int64_t kv_tokens = options.kv_tokens > 0 ? options.kv_tokens : std::max<int64_t>(16384, context);
  require(kv_tokens >= context, ErrorKind::InvalidInput,
          "--kv-tokens ({}) must hold at least one full context (--ctx {})", kv_tokens, context);
  return kv_tokens;
}

// The scheduler starts later, in start_engine(). The process settings (threads, map mode) were
// applied once before: changing them would replace the thread pool under running schedulers.
// `commit_memory`: make the KV caches resident now, so that a memory budget counts real memory.
std::unique_ptr<ServingEngine> open_engine(const ServeOptions& options, const ModelToServe& model, bool commit_memory) {
  auto engine = std::make_unique<ServingEngine>();
  engine->name = model.name;
  ModelOptions model_options = options.model;
  model_options.model_path = model.path;
  const int64_t context = model_options.context;
  model_options.context = 16;  // the session's own cache is replaced by the shared pool below
  engine->session = load_model_session(model_options, true);
  ModelSession& session = engine->session;
  const int64_t kv_tokens = kv_pool_tokens(options);
  session.cache.reset();
  session.cache = std::make_unique<KvCache>(session.model->config, kv_tokens, KvCache::kDefaultBlockSize,
                                            kv_cache_type(model_options.kv_type));
  engine->scheduler_options = options.scheduler;
  engine->scheduler_options.context = std::min(context, session.model->config.max_positions);
  // The draft's cache holds every running sequence's tokens too, at the draft's (smaller) width.
  open_draft(session, options.draft, model_options, kv_tokens);
  engine->scheduler_options.drafter = session.drafter.get();
  if (commit_memory) {
    session.cache->commit();
    if (session.drafter) session.drafter->cache().commit();
  }
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
  engine.serving_model = {engine.scheduler.get(), session.tokenizer.get(), chat_template, engine.name};
}

std::vector<std::unique_ptr<ServingEngine>> load_engines(const ServeOptions& options,
                                                         const std::vector<ModelToServe>& models) {
  std::vector<std::unique_ptr<ServingEngine>> engines;
  for (const auto& model : models) {
    if (models.size() > 1) spdlog::info("loading model '{}' from {}", model.name, model.path);
    engines.push_back(open_engine(options, model, false));
  }
  for (auto& engine : engines) start_engine(*engine, options.template_name);
  return engines;
}

// The draft's memory (--draft): its weights and its KV cache, which holds the target's positions up
// to the draft's own maximum, as open_draft() makes it.
uint64_t draft_bytes(const ServeOptions& options, int64_t kv_tokens, DType kv_type) {
  if (options.draft.model_path.empty()) return 0;
  const ModelFootprint draft = estimate_model_footprint(options.draft.model_path, kv_tokens, kv_type);
  return draft.weights_bytes +
         KvCache::bytes_for(draft.config, std::min(kv_tokens, draft.config.max_positions), KvCache::kDefaultBlockSize, kv_type);
}

// Under --max-memory: every model's estimated size (from its configuration and file sizes, so a
// wrong path fails here, at start) and a loader that opens and starts it on first use.
std::shared_ptr<server::ModelResidency> plan_on_demand(const ServeOptions& options,
                                                       const std::vector<ModelToServe>& models) {
  const uint64_t budget = parse_byte_size(options.max_memory, "--max-memory");
  const DType kv_type = kv_cache_type(options.model.kv_type);
  const int64_t kv_tokens = kv_pool_tokens(options);
  std::vector<server::OnDemandModel> on_demand;
  for (const auto& model : models) {
    const ModelFootprint footprint = estimate_model_footprint(model.path, kv_tokens, kv_type);
    const uint64_t draft = draft_bytes(options, kv_tokens, kv_type);
    std::printf("retort serve: model '%s' loads on first use: %s (weights %s, KV cache %s%s)\n", model.name.c_str(),
                format_byte_size(footprint.total() + draft).c_str(), format_byte_size(footprint.weights_bytes).c_str(),
                format_byte_size(footprint.kv_cache_bytes).c_str(),
                draft > 0 ? (", draft " + format_byte_size(draft)).c_str() : "");
    auto load = [&options, model]() -> std::unique_ptr<server::LoadedEngine> {
      auto engine = open_engine(options, model, /*commit_memory=*/true);
      start_engine(*engine, options.template_name);
      return engine;
    };
    on_demand.push_back({model.name, footprint.total() + draft,
                         std::min(options.model.context, footprint.config.max_positions), std::move(load)});
  }
  return std::make_shared<server::ModelResidency>(std::move(on_demand), budget);
}

std::string_view template_label(const ServingEngine& engine) {
  return engine.serving_model.chat_template ? chat_template_name(*engine.serving_model.chat_template) : "none";
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

  apply_process_settings(options.model);  // once: loads on demand must not replace the thread pool
  std::vector<std::unique_ptr<ServingEngine>> engines;  // without --max-memory: all, loaded now
  std::shared_ptr<server::ModelResidency> residency;    // with it: loaded on first use
  try {
    if (options.max_memory.empty()) {
      engines = load_engines(options, models);
      std::vector<server::ServingModel> serving;
      for (const auto& engine : engines) serving.push_back(engine->serving_model);
      http.attach(std::move(serving));
      print_ready(options, port, engines);
    } else {
      residency = plan_on_demand(options, models);
      http.attach(residency);
      std::printf("retort serve: ready on http://%s:%d (%zu model%s loaded on first use within --max-memory %s)\n",
                  options.server.host.c_str(), port, models.size(), models.size() > 1 ? "s" : "",
                  format_byte_size(residency->budget_bytes()).c_str());
      std::fflush(stdout);
    }
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
  if (residency) {
    residency->shutdown(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()));
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
  command->add_option("--max-memory", o.max_memory,
                      "Memory for loaded models (weights + KV cache), e.g. 6GiB or 512MiB: models load on first use "
                      "and the least recently used idle one is unloaded to make room (default: all loaded at start)")
      ->type_name("SIZE");
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
