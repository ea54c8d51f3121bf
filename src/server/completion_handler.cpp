#include "server/completion_handler.h"

#include <chrono>
#include <random>

#include "engine/chat_prompt.h"
#include "server/api_error.h"
#include "util/error.h"

namespace retort::server {

namespace {

using Clock = std::chrono::steady_clock;
// How long a response may stay silent before a keep-alive goes out: a write is the only way to
// notice that the client has gone away. Streams send an SSE comment after a second of silence
// (tokens usually come sooner); a JSON body waiting for its whole reply gets a leading space (valid
// JSON whitespace) more often, since it has no tokens to write in between.
constexpr auto kStreamKeepAlive = std::chrono::milliseconds(1000);
constexpr auto kBodyKeepAlive = std::chrono::milliseconds(200);
constexpr auto kEventWait = std::chrono::milliseconds(100);

std::mt19937_64& thread_rng() {
  thread_local std::mt19937_64 rng(std::random_device{}() ^ (static_cast<uint64_t>(std::random_device{}()) << 32));
  return rng;
}

double seconds_between(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

// Everything one in-flight response needs; shared by the content provider and its releaser.
struct ActiveResponse {
  ActiveResponse(ResponseContext context) : builder(std::move(context)) {}
  // Keeps the model loaded until the response is done; the first member, so it is returned last.
  ModelLease model_lease;
  std::shared_ptr<RequestStream> stream;
  ResponseBuilder builder;
  bool streaming = false;
  bool started = false;
  bool logged = false;
  Clock::time_point received;
  Clock::time_point last_write;
  std::optional<Clock::time_point> last_token;
  int64_t tokens_seen = 0;
  AccessRecord record;
  CompletionServices* services = nullptr;
};

void log_response(ActiveResponse& active, int status) {
  if (active.logged) return;
  active.logged = true;
  const auto now = Clock::now();
  AccessRecord& record = active.record;
  record.status = status;
  record.prompt_tokens = active.builder.prompt_tokens();
  record.completion_tokens = active.builder.generated_tokens();
  record.duration_seconds = seconds_between(active.received, now);
  record.finish_reason = active.builder.finished() ? openai_finish_reason(active.builder.finish_reason()) : "cancelled";
  if (auto first = active.stream->first_token_time()) record.ttft_seconds = seconds_between(active.received, *first);
  active.services->metrics->count_request(record.path, status);
  active.services->metrics->observe_request_duration(record.duration_seconds);
  active.services->access_log->write(record);
}

void note_tokens(ActiveResponse& active, const GenerationEvent& event) {
  if (event.generated_tokens <= active.tokens_seen) return;
  const auto now = Clock::now();
  if (!active.last_token) {
    active.services->metrics->observe_time_to_first_token(seconds_between(active.received, now));
  } else {
    const double gap = seconds_between(*active.last_token, now);
    const int64_t tokens = event.generated_tokens - active.tokens_seen;
    for (int64_t i = 0; i < tokens; ++i) active.services->metrics->observe_inter_token(gap / static_cast<double>(tokens));
  }
  active.last_token = now;
  active.tokens_seen = event.generated_tokens;
}

// One call of the chunked content provider: wait briefly for events and write what they produce.
// Returning false tells httplib the connection failed; the releaser then cancels the sequence.
bool provide(ActiveResponse& active, httplib::DataSink& sink) {
  auto write = [&](const std::string& text) {
    if (text.empty()) return true;
    if (!sink.write(text.data(), text.size())) return false;
    active.last_write = Clock::now();
    return true;
  };
  if (!active.started) {
    active.started = true;
    if (active.streaming && !write(active.builder.stream_start())) return false;
  }
  auto events = active.stream->wait_events(kEventWait);
  for (const auto& event : events) {
    note_tokens(active, event);
    if (active.streaming) {
      if (!write(active.builder.stream_event(event))) return false;
    } else {
      active.builder.add(event);
    }
  }
  if (!active.builder.finished()) {
    // A JSON body writes nothing while tokens arrive, so its keep-alive goes out on the clock, not
    // only in silence: otherwise a client that left mid-generation is noticed only at the end.
    if (Clock::now() - active.last_write < (active.streaming ? kStreamKeepAlive : kBodyKeepAlive)) return true;
    return write(active.streaming ? ": keep-alive\n\n" : " ");
  }
  if (!active.streaming && !write(active.builder.final_body())) return false;
  sink.done();
  log_response(active, 200);
  return true;
}

GenerationRequest chat_generation(const ChatCompletionRequest& chat, const ServingModel& model,
                                  const CompletionServices& services) {
  const Tokenizer& tokenizer = *model.tokenizer;
  if (!model.chat_template) {
    throw ApiError(400, "this model has no chat template; use /v1/completions, or restart the server with --template");
  }
  ChatPrompt prompt;
  try {
    prompt = build_chat_prompt(tokenizer, *model.chat_template, chat.messages);
  } catch (const Error& error) {
    throw ApiError(400, error.what(), "messages");
  }
  GenerationRequest generation;
  generation.prompt = std::move(prompt.tokens);
  generation.split_reasoning = !services.options->reasoning_inline;
  generation.starts_in_reasoning = prompt.opens_reasoning;
  return generation;
}

GenerationRequest completion_generation(const CompletionRequest& completion, const ServingModel& model) {
  GenerationRequest generation;
  if (completion.prompt_tokens) {
    // Checked here so the 400 names the token id (the scheduler's check is an OutOfRange, which
    // this handler reports as context_length_exceeded).
    const int64_t vocab = model.scheduler->vocab_size();
    for (size_t i = 0; i < completion.prompt_tokens->size(); ++i) {
      const int32_t id = (*completion.prompt_tokens)[i];
      if (id >= vocab) {
        throw ApiError(400,
                       fmt::format("prompt[{}] is token id {}, outside this model's vocabulary (0..{}); send ids "
                                   "below {}",
                                   i, id, vocab - 1, vocab),
                       "prompt", "invalid_token_id");
      }
    }
    generation.prompt = *completion.prompt_tokens;
  } else {
    generation.prompt = model.tokenizer->encode(completion.prompt, /*add_special=*/true);
  }
  return generation;
}

// Fills in the budget: max_tokens as asked (the scheduler refuses prompt + max_tokens over the
// context, with the numbers), or as many as fit, capped.
void apply_settings(GenerationRequest& generation, const GenerationSettings& settings, const ServingModel& model,
                    const CompletionServices& services) {
  const int64_t context = model.scheduler->context();
  const int64_t prompt = static_cast<int64_t>(generation.prompt.size());
  if (prompt == 0) throw ApiError(400, "the prompt is empty; send some text", "prompt");
  if (prompt >= context) {
    throw ApiError(400,
                   fmt::format("this model's maximum context length is {} tokens, but the prompt has {} tokens; "
                               "shorten the prompt",
                               context, prompt),
                   "messages", "context_length_exceeded");
  }
  generation.max_tokens = settings.max_tokens.value_or(
      static_cast<int>(std::min<int64_t>(services.options->limits.max_tokens_cap, context - prompt)));
  generation.sampling = settings.sampling;
  generation.stop_strings = settings.stop;
  generation.top_logprobs = settings.top_logprobs;
  generation.grammar = settings.grammar;
  if (services.options->request_timeout_seconds > 0) {
    generation.deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                             std::chrono::duration<double>(services.options->request_timeout_seconds));
  }
}

// The model a request picked, held for the request: under a memory budget this loads it (or waits
// for room), bounded by the request timeout (600 s when that is off); otherwise it is always loaded.
ModelLease hold_model(const NamedModel& served, const CompletionServices& services) {
  if (services.residency == nullptr) return ModelLease::pinned(served.model);
  const double timeout = services.options->request_timeout_seconds;
  const auto wait = std::chrono::duration<double>(timeout > 0 ? timeout : 600.0);
  return services.residency->acquire(served.name, Clock::now() + std::chrono::duration_cast<Clock::duration>(wait));
}

}  // namespace

std::string random_id() {
  return fmt::format("{:016x}{:08x}", thread_rng()(), static_cast<uint32_t>(thread_rng()()));
}

uint64_t random_seed() { return thread_rng()(); }

void handle_completion(Endpoint endpoint, const httplib::Request& request, httplib::Response& response,
                       const std::string& request_id, CompletionServices& services) {
  const auto received = Clock::now();
  if (services.models.empty()) throw ApiError(503, "the model is still loading; retry shortly");
  if (services.shutting_down->load()) throw ApiError(503, "the server is shutting down");
  const nlohmann::json body = parse_json_body(request.body);
  const bool chat = endpoint == Endpoint::ChatCompletions;

  // The model is picked before the prompt is built: its tokenizer and template make the prompt.
  GenerationRequest generation;
  GenerationSettings settings;
  const NamedModel* served = nullptr;
  ModelLease lease;
  if (chat) {
    ChatCompletionRequest parsed = parse_chat_request(body, services.options->limits, random_seed());
    settings = parsed.settings;
    served = &services.models.route(settings.model);
    lease = hold_model(*served, services);
    generation = chat_generation(parsed, lease.model(), services);
  } else {
    CompletionRequest parsed = parse_completion_request(body, services.options->limits, random_seed());
    settings = parsed.settings;
    served = &services.models.route(settings.model);
    lease = hold_model(*served, services);
    generation = completion_generation(parsed, lease.model());
  }
  const ServingModel& model = lease.model();
  apply_settings(generation, settings, model, services);
  const bool split_reasoning = generation.split_reasoning;

  SubmitResult submitted;
  try {
    submitted = model.scheduler->submit(std::move(generation));
  } catch (const Error& error) {
    const bool too_long = error.kind() == ErrorKind::OutOfRange;
    throw ApiError(400, error.what(), too_long ? "max_tokens" : "", too_long ? "context_length_exceeded" : "");
  }
  if (submitted.status == SubmitStatus::QueueFull) {
    response.set_header("Retry-After", "1");
    throw ApiError(429, "the server is busy: the request queue is full; retry after a second", "", "queue_full");
  }
  if (submitted.status == SubmitStatus::ShuttingDown) throw ApiError(503, "the server is shutting down");

  ResponseContext context;
  context.endpoint = endpoint;
  context.id = (chat ? "chatcmpl-" : "cmpl-") + request_id;
  context.created = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  context.model = served->name;
  context.include_usage = settings.include_usage;
  context.logprobs = settings.top_logprobs >= 0;
  context.split_reasoning = split_reasoning;

  auto active = std::make_shared<ActiveResponse>(std::move(context));
  active->stream = submitted.stream;
  active->streaming = settings.stream;
  active->received = received;
  active->last_write = received;
  active->services = &services;
  active->model_lease = std::move(lease);
  active->record.id = request_id;
  active->record.method = request.method;
  active->record.path = request.path;
  active->record.remote = request.remote_addr;

  response.status = 200;
  response.set_header("X-Request-Id", request_id);
  if (settings.stream) {
    response.set_header("Cache-Control", "no-cache");
    response.set_header("X-Accel-Buffering", "no");
  }
  response.set_chunked_content_provider(
      settings.stream ? "text/event-stream" : "application/json",
      [active](size_t, httplib::DataSink& sink) { return provide(*active, sink); },
      [active](bool success) {
        if (!success || !active->builder.finished()) {
          active->stream->cancel();
          log_response(*active, 499);  // nginx's "client closed request"
        }
      });
}

}  // namespace retort::server
