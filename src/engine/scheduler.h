#pragma once
// The request scheduler behind `retort serve`: one engine thread owns every sequence and steps them
// together. Each iteration is one batched forward mixing a decode token for every running sequence
// with prefill chunks of newly admitted prompts; new requests are admitted between iterations when
// the paged KV cache has room for their prompt. Requests that do not fit yet wait in a bounded
// queue; a full queue refuses at submit time (the caller answers 429).
//
// Callers (HTTP threads) talk to the engine only through typed structs: a GenerationRequest goes
// in, a RequestStream hands back GenerationEvents. Cancelling a stream (client went away) makes the
// engine drop the sequence and free its KV blocks at the start of the next iteration.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "engine/output_grammar.h"
#include "engine/reasoning.h"
#include "engine/sampler.h"
#include "engine/speculative.h"
#include "engine/stop_conditions.h"
#include "model/transformer.h"
#include "tokenizer/tokenizer.h"

namespace retort {

using SteadyTime = std::chrono::steady_clock::time_point;
class ConstraintVocabulary;

struct GenerationRequest {
  std::vector<int32_t> prompt;  // already tokenized, never empty
  SamplingParams sampling;
  int max_tokens = 256;  // >= 1, and prompt + max_tokens <= the scheduler's context
  std::vector<std::string> stop_strings;
  int top_logprobs = -1;              // -1: no logprobs; 0: the sampled token's only; n: also the n best
  bool split_reasoning = false;       // route <think>…</think> to TextChannel::Reasoning
  bool starts_in_reasoning = false;   // the prompt already opened <think>
  std::optional<SteadyTime> deadline;  // generation ends (FinishReason::Timeout) when it passes
  // Structured output: every sampled token keeps the reply (after "</think>" when the prompt opened
  // reasoning) within this grammar, and generation stops once it is complete. Null: free text.
  std::shared_ptr<const OutputGrammar> grammar;
};

enum class FinishReason {
  Stop,       // EOS or a stop string
  Length,     // max_tokens or the context is full
  Timeout,    // the request's deadline passed
  Cancelled,  // the caller cancelled (client disconnected) or the server shut down
  Error,      // the engine failed on this request; `error` says why
};

// OpenAI's finish_reason for a finished request ("stop" or "length"); timeouts report "length".
const char* openai_finish_reason(FinishReason reason);

struct TokenLogprob {
  std::string token;  // the token's text (raw bytes; may be part of a UTF-8 character)
  float logprob = 0;
  std::vector<std::pair<std::string, float>> top;  // most likely first
};

struct GenerationEvent {
  std::string content;    // answer text safe to show now
  std::string reasoning;  // reasoning text (only with split_reasoning)
  std::vector<TokenLogprob> logprobs;  // for the tokens this event covers (with top_logprobs >= 0)
  bool finished = false;
  FinishReason reason = FinishReason::Stop;
  std::string error;  // for FinishReason::Error
  int64_t prompt_tokens = 0;      // set on the finishing event
  int64_t generated_tokens = 0;   // set on the finishing event
};

// One request's side of the conversation with the engine. Thread-safe.
class RequestStream {
 public:
  // Waits up to `timeout` for events; returns those pending (empty on timeout). After the
  // finishing event has been taken, returns empty at once.
  std::vector<GenerationEvent> wait_events(std::chrono::milliseconds timeout);
  void cancel() { cancelled_.store(true); }
  bool cancelled() const { return cancelled_.load(); }
  bool finished() const;
  // When the first token was produced (set by the engine), for time-to-first-token.
  std::optional<SteadyTime> first_token_time() const;

 private:
  friend class Scheduler;
  void push(GenerationEvent event);

  mutable std::mutex mutex_;
  std::condition_variable ready_;
  std::vector<GenerationEvent> pending_;
  bool finished_ = false;
  bool finish_delivered_ = false;
  std::optional<SteadyTime> first_token_;
  std::atomic<bool> cancelled_{false};
};

struct SchedulerOptions {
  int64_t context = 4096;        // most positions one sequence may use (prompt + generated)
  int max_running = 16;          // sequences stepped together
  int max_queued = 64;           // requests waiting for admission before submit refuses
  int64_t max_batch_tokens = 512;  // tokens in one forward (decode tokens first, then prefill chunks)
  bool prefix_cache = false;       // reuse the KV blocks of earlier requests' shared prompt prefixes
  Drafter* drafter = nullptr;      // speculative decoding: every decoding sequence drafts, one verify forward
};

enum class SubmitStatus { Accepted, QueueFull, ShuttingDown };

struct SubmitResult {
  SubmitStatus status = SubmitStatus::Accepted;
  std::shared_ptr<RequestStream> stream;  // set when Accepted
};

// Counters for /metrics, read without stopping the engine.
struct SchedulerStats {
  int64_t queued = 0;
  int64_t running = 0;
  int64_t kv_blocks_used = 0;
  int64_t kv_blocks_total = 0;
  int64_t prompt_tokens_total = 0;     // evaluated prompt tokens since start
  int64_t generated_tokens_total = 0;  // sampled tokens since start
  int64_t preemptions_total = 0;
  int64_t steps_total = 0;
  int64_t kv_blocks_cached = 0;              // prefix cache: blocks kept for later prompts, held by none
  int64_t prefix_cache_query_tokens_total = 0;  // prompt tokens of admitted requests (prefix cache on)
  int64_t prefix_cache_hit_tokens_total = 0;    // of those, found in the cache (prefill skipped)
  SpeculationStats speculation;                 // with a draft model
};

class Scheduler {
 public:
  // The model, cache and tokenizer must outlive the scheduler; the engine thread starts here.
  Scheduler(Transformer& model, KvCache& cache, const Tokenizer& tokenizer, SchedulerOptions options);
  ~Scheduler();  // shutdown(0): cancels whatever is still in flight
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Validates the request against the limits (throws retort::Error InvalidInput/OutOfRange with
  // the numbers) and queues it.
  SubmitResult submit(GenerationRequest request);

  // Stops admitting, lets in-flight requests finish until `grace` has passed, then cancels the
  // rest and joins the engine thread. Safe to call more than once.
  void shutdown(std::chrono::milliseconds grace);
  bool accepting() const { return accepting_.load(); }

  SchedulerStats stats() const;
  const SchedulerOptions& options() const { return options_; }
  int64_t context() const { return options_.context; }
  int64_t vocab_size() const;  // the model's: prompt token ids must be below it

 private:
  struct Sequence;
  void engine_loop();
  void take_new_requests();
  void drop_finished_or_cancelled();
  void admit_waiting();
  bool prefix_being_prefilled(const Sequence& waiting, int64_t cached_tokens) const;
  bool build_batch(std::vector<SequenceChunk>& batch, std::vector<Sequence*>& owners);
  bool grow_or_preempt(Sequence& sequence, int64_t new_length);
  void preempt(Sequence& victim);
  void sample_and_emit(Sequence& sequence, std::span<const float> logits);
  void emit(Sequence& sequence, int32_t token, std::span<const float> logits);
  // Speculative decoding (scheduler_speculation.cpp).
  void propose_drafts();
  int64_t decode_positions(const Sequence& sequence) const;
  SequenceChunk decode_chunk(Sequence& sequence);
  void verify_and_emit(Sequence& sequence, std::span<const float> rows);
  void release_kv(Sequence& sequence);
  void finish(Sequence& sequence, FinishReason reason, std::string error = {});
  void fail_batch(const std::vector<Sequence*>& owners, const std::string& message);
  void publish_stats();

  Transformer& model_;
  KvCache& cache_;
  const Tokenizer& tokenizer_;
  SchedulerOptions options_;
  std::vector<int32_t> eos_ids_;
  std::shared_ptr<const ConstraintVocabulary> constraint_vocabulary_;  // built on first use (engine thread)

  mutable std::mutex inbox_mutex_;
  std::condition_variable inbox_ready_;
  std::deque<std::unique_ptr<Sequence>> inbox_;  // submitted, not yet seen by the engine
  int64_t queued_ = 0;                           // inbox + waiting, under inbox_mutex_
  std::atomic<int64_t> in_flight_{0};          // submitted and not yet finished (what shutdown waits for)
  std::atomic<bool> accepting_{true};
  std::atomic<bool> stopping_{false};  // engine: cancel everything and exit
  std::thread engine_;

  // Engine thread only.
  std::deque<std::unique_ptr<Sequence>> waiting_;
  std::vector<std::unique_ptr<Sequence>> running_;
  std::vector<float> logits_;

  mutable std::mutex stats_mutex_;
  SchedulerStats stats_;
};

}  // namespace retort
