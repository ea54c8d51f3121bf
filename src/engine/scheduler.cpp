#include "engine/scheduler.h"

#include <algorithm>

#include "engine/generation.h"
#include "engine/scheduler_sequence.h"
#include "engine/token_constraint.h"
#include "util/error.h"
#include "util/log.h"

namespace retort {

const char* openai_finish_reason(FinishReason reason) {
  switch (reason) {
    case FinishReason::Stop: return "stop";
    case FinishReason::Length:
    case FinishReason::Timeout: return "length";
    case FinishReason::Cancelled: return "cancelled";
    case FinishReason::Error: return "error";
  }
  return "stop";
}

// ---- RequestStream ----

std::vector<GenerationEvent> RequestStream::wait_events(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  if (finish_delivered_) return {};
  ready_.wait_for(lock, timeout, [&] { return !pending_.empty(); });
  std::vector<GenerationEvent> events;
  events.swap(pending_);
  for (const auto& event : events) finish_delivered_ = finish_delivered_ || event.finished;
  return events;
}

bool RequestStream::finished() const {
  std::lock_guard lock(mutex_);
  return finished_;
}

std::optional<SteadyTime> RequestStream::first_token_time() const {
  std::lock_guard lock(mutex_);
  return first_token_;
}

void RequestStream::push(GenerationEvent event) {
  {
    std::lock_guard lock(mutex_);
    if (finished_) return;
    finished_ = event.finished;
    if (!first_token_ && (event.generated_tokens > 0 || !event.content.empty() || !event.reasoning.empty() ||
                          !event.logprobs.empty())) {
      first_token_ = std::chrono::steady_clock::now();
    }
    pending_.push_back(std::move(event));
  }
  ready_.notify_all();
}

// ---- Sequence: everything the engine keeps per request ----

// ---- Scheduler ----

Scheduler::Scheduler(Transformer& model, KvCache& cache, const Tokenizer& tokenizer, SchedulerOptions options)
    : model_(model), cache_(cache), tokenizer_(tokenizer), options_(options) {
  require(options_.max_running >= 1 && options_.max_queued >= 0 && options_.max_batch_tokens >= 1,
          ErrorKind::InvalidInput, "scheduler limits must be positive (running {}, queued {}, batch tokens {})",
          options_.max_running, options_.max_queued, options_.max_batch_tokens);
  options_.context = std::min({options_.context, cache_.capacity_tokens(), model_.config().max_positions});
  cache_.set_prefix_caching(options_.prefix_cache);
  eos_ids_ = end_of_sequence_ids(tokenizer_, model_.config());
  stats_.kv_blocks_total = cache_.total_blocks();
  engine_ = std::thread([this] { engine_loop(); });
}

Scheduler::~Scheduler() { shutdown(std::chrono::milliseconds(0)); }

int64_t Scheduler::vocab_size() const { return model_.config().vocab_size; }

SubmitResult Scheduler::submit(GenerationRequest request) {
  require(!request.prompt.empty(), ErrorKind::InvalidInput, "the prompt is empty; send some text");
  require(request.max_tokens >= 1, ErrorKind::InvalidInput, "max_tokens must be at least 1, got {}",
          request.max_tokens);
  const int64_t prompt = static_cast<int64_t>(request.prompt.size());
  require(prompt + request.max_tokens <= options_.context, ErrorKind::OutOfRange,
          "this model's maximum context length is {} tokens, but {} tokens were requested ({} in the prompt, {} "
          "to generate); shorten the prompt or lower max_tokens",
          options_.context, prompt + request.max_tokens, prompt, request.max_tokens);
  require(request.top_logprobs <= 20, ErrorKind::InvalidInput, "top_logprobs must be at most 20, got {}",
          request.top_logprobs);
  request.sampling.validate();
  for (int32_t id : request.prompt) {
    require(id >= 0 && id < model_.config().vocab_size, ErrorKind::OutOfRange,
            "prompt token {} is outside the vocabulary (0..{})", id, model_.config().vocab_size - 1);
  }

  const int64_t vocab = model_.config().vocab_size;
  auto sequence = std::make_unique<Sequence>(std::move(request), tokenizer_, eos_ids_, vocab,
                                             options_.drafter ? options_.drafter->vocab() : vocab);
  SubmitResult result;
  {
    std::lock_guard lock(inbox_mutex_);
    if (!accepting_.load()) return {SubmitStatus::ShuttingDown, nullptr};
    if (queued_ >= options_.max_queued) return {SubmitStatus::QueueFull, nullptr};
    ++queued_;
    ++in_flight_;
    result.stream = sequence->stream;
    inbox_.push_back(std::move(sequence));
  }
  inbox_ready_.notify_one();
  return result;
}

void Scheduler::shutdown(std::chrono::milliseconds grace) {
  accepting_.store(false);
  const auto deadline = std::chrono::steady_clock::now() + grace;
  while (in_flight_.load() > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  {
    std::lock_guard lock(inbox_mutex_);
    stopping_.store(true);
  }
  inbox_ready_.notify_all();
  if (engine_.joinable()) engine_.join();
}

SchedulerStats Scheduler::stats() const {
  std::lock_guard lock(stats_mutex_);
  SchedulerStats copy = stats_;
  std::lock_guard inbox_lock(inbox_mutex_);
  copy.queued = queued_;
  return copy;
}

void Scheduler::engine_loop() {
  uint64_t next_admit_order = 0;
  std::vector<SequenceChunk> batch;
  std::vector<Sequence*> owners;
  while (true) {
    take_new_requests();
    if (stopping_.load()) break;
    drop_finished_or_cancelled();
    const size_t before = running_.size();
    admit_waiting();
    for (size_t i = before; i < running_.size(); ++i) running_[i]->admit_order = next_admit_order++;
    if (running_.empty()) {
      publish_stats();
      continue;
    }
    if (options_.drafter != nullptr) propose_drafts();
    if (build_batch(batch, owners)) {
      try {
        const int64_t rows = model_.forward(batch, cache_, logits_);
        // Before sampling, which may end a sequence and release its blocks: its full ones are cached.
        // (A verified chunk is indexed once its rejected proposals are gone.)
        for (size_t i = 0; i < batch.size(); ++i)
          if (batch[i].logits != LogitsWanted::All) cache_.index_full_blocks(owners[i]->kv, owners[i]->tokens);
        const int64_t vocab = model_.config().vocab_size;
        int64_t row = 0;
        for (size_t i = 0; i < batch.size(); ++i) {
          if (batch[i].logits == LogitsWanted::None) continue;
          const auto chunk_rows = static_cast<int64_t>(batch[i].logits == LogitsWanted::All ? batch[i].tokens.size() : 1);
          const auto rows_of_chunk = std::span<const float>(logits_).subspan(row * vocab, chunk_rows * vocab);
          if (batch[i].logits == LogitsWanted::All) {
            verify_and_emit(*owners[i], rows_of_chunk);
          } else {
            sample_and_emit(*owners[i], rows_of_chunk);
          }
          row += chunk_rows;
        }
        if (row != rows) fail(ErrorKind::Internal, "forward returned {} logit rows, expected {}", rows, row);
        std::lock_guard lock(stats_mutex_);
        ++stats_.steps_total;
      } catch (const std::exception& error) {
        spdlog::error("engine step failed: {}", error.what());
        fail_batch(owners, error.what());
      }
    }
    std::erase_if(running_, [](const auto& s) { return s->done; });
    publish_stats();
  }
  // Shutting down: whatever is left is cancelled.
  for (auto& s : running_) finish(*s, FinishReason::Cancelled);
  for (auto& s : waiting_) finish(*s, FinishReason::Cancelled);
  {
    std::lock_guard lock(inbox_mutex_);
    for (auto& s : inbox_) finish(*s, FinishReason::Cancelled);
    inbox_.clear();
    queued_ = 0;
  }
  running_.clear();
  waiting_.clear();
  publish_stats();
}

void Scheduler::take_new_requests() {
  std::unique_lock lock(inbox_mutex_);
  const bool idle = running_.empty() && waiting_.empty();
  if (idle) {
    // Nothing to step: sleep until work arrives (a short timeout keeps shutdown and stats fresh).
    inbox_ready_.wait_for(lock, std::chrono::milliseconds(100), [&] { return !inbox_.empty() || stopping_.load(); });
  }
  while (!inbox_.empty()) {
    waiting_.push_back(std::move(inbox_.front()));
    inbox_.pop_front();
  }
}

void Scheduler::drop_finished_or_cancelled() {
  const auto now = std::chrono::steady_clock::now();
  auto check = [&](Sequence& s) {
    if (s.stream->cancelled()) {
      finish(s, FinishReason::Cancelled);
    } else if (s.request.deadline && now >= *s.request.deadline) {
      finish(s, FinishReason::Timeout);
    }
  };
  for (auto& s : running_) check(*s);
  std::erase_if(running_, [](const auto& s) { return s->done; });
  for (auto& s : waiting_) check(*s);
  const auto removed = std::erase_if(waiting_, [](const auto& s) { return s->done; });
  if (removed > 0) {
    std::lock_guard lock(inbox_mutex_);
    queued_ -= static_cast<int64_t>(removed);
  }
}

// With the prefix cache: whether a running sequence is still prefilling whole blocks of prompt that
// `waiting` starts with, beyond the `cached_tokens` it found cached. Those blocks are indexed as they
// are filled, so waiting a step or two takes them instead of computing them twice: requests that
// share a system prompt and arrive together compute it once. The wait ends as the running
// sequence's prefill moves past the shared blocks (or it leaves), so it is bounded.
bool Scheduler::prefix_being_prefilled(const Sequence& waiting, int64_t cached_tokens) const {
  if (!cache_.prefix_caching()) return false;
  const int64_t block = cache_.block_size();
  for (const auto& r : running_) {
    if (r->done || r->kv.length >= r->prompt_size) continue;  // not prefilling its prompt
    const auto limit = static_cast<size_t>(std::min<int64_t>(r->prompt_size, int64_t(waiting.tokens.size()) - 1));
    size_t common = 0;
    while (common < limit && r->tokens[common] == waiting.tokens[common]) ++common;
    const int64_t shared = int64_t(common) / block * block;
    if (shared > cached_tokens && r->kv.length < shared) return true;
  }
  return false;
}

void Scheduler::admit_waiting() {
  int64_t admitted = 0;
  for (auto it = waiting_.begin(); it != waiting_.end() && static_cast<int>(running_.size()) < options_.max_running;) {
    Sequence& next = **it;
    const int64_t length = static_cast<int64_t>(next.tokens.size());
    // Blocks of earlier requests holding this prompt's start are taken first (read-only, shared).
    const int64_t hit = cache_.attach_cached_prefix(next.kv, next.tokens);
    if (prefix_being_prefilled(next, hit)) {  // later requests behind it may still go ahead
      cache_.release(next.kv);
      ++it;
      continue;
    }
    // Keep one block per running sequence free so that decoding rarely has to preempt.
    const int64_t headroom = static_cast<int64_t>(running_.size());
    const bool room = cache_.blocks_needed(next.kv, length + 1) + headroom <= cache_.free_blocks() || running_.empty();
    if (!room || !cache_.reserve(next.kv, length)) {
      cache_.release(next.kv);  // wait for running sequences to give blocks back; the hit is found again
      break;
    }
    if (cache_.prefix_caching()) {
      std::lock_guard lock(stats_mutex_);
      stats_.prefix_cache_query_tokens_total += length;
      stats_.prefix_cache_hit_tokens_total += hit;
    }
    running_.push_back(std::move(*it));
    it = waiting_.erase(it);
    ++admitted;
  }
  if (admitted > 0) {
    std::lock_guard lock(inbox_mutex_);
    queued_ -= admitted;
  }
}

// Decode steps need one more position each; when the pool cannot hold them all, the most recently
// admitted sequences give their blocks back and go to the front of the queue, to be recomputed
// from their tokens later (nothing they produced is lost).
void Scheduler::preempt(Sequence& victim) {
  release_kv(victim);
  {
    std::lock_guard lock(stats_mutex_);
    ++stats_.preemptions_total;
  }
  spdlog::debug("preempted a sequence of {} tokens to free KV blocks", victim.tokens.size());
}

bool Scheduler::build_batch(std::vector<SequenceChunk>& batch, std::vector<Sequence*>& owners) {
  batch.clear();
  owners.clear();
  // Make room for every decode token first, preempting the youngest sequences if needed.
  while (true) {
    int64_t needed = 0;
    for (auto& s : running_) {
      if (s->pending() == 1) needed += cache_.blocks_needed(s->kv, s->kv.length + decode_positions(*s));
    }
    if (needed <= cache_.free_blocks() || running_.size() <= 1) break;
    auto youngest = std::max_element(running_.begin(), running_.end(),
                                     [](const auto& a, const auto& b) { return a->admit_order < b->admit_order; });
    preempt(**youngest);
    std::lock_guard lock(inbox_mutex_);
    ++queued_;
    waiting_.push_front(std::move(*youngest));
    running_.erase(youngest);
  }
  int64_t budget = options_.max_batch_tokens;
  for (auto& s : running_) {
    if (s->pending() != 1 || budget <= 0) continue;
    if (!cache_.reserve(s->kv, s->kv.length + decode_positions(*s))) s->proposal.tokens.clear();  // decode alone
    if (!cache_.reserve(s->kv, s->kv.length + 1)) {
      finish(*s, FinishReason::Error, "the KV cache is full; raise --kv-tokens");
      continue;
    }
    batch.push_back(decode_chunk(*s));
    owners.push_back(s.get());
    budget -= static_cast<int64_t>(batch.back().tokens.size());
  }
  for (auto& s : running_) {
    const int64_t pending = s->pending();
    if (pending <= 1 || budget <= 0 || s->done) continue;
    const int64_t n = std::min(pending, budget);
    // The whole prompt was reserved at admission.
    batch.push_back({&s->kv, std::span<const int32_t>(s->tokens).subspan(static_cast<size_t>(s->kv.length), n),
                     n == pending ? LogitsWanted::Last : LogitsWanted::None});
    owners.push_back(s.get());
    budget -= n;
    std::lock_guard lock(stats_mutex_);
    stats_.prompt_tokens_total += n;
  }
  return !batch.empty();
}

void Scheduler::sample_and_emit(Sequence& s, std::span<const float> logits) {
  if (s.request.grammar) {
    if (!constraint_vocabulary_) {
      constraint_vocabulary_ = std::make_shared<const ConstraintVocabulary>(tokenizer_, eos_ids_, model_.config().vocab_size);
    }
    if (!s.constraint) s.constraint.emplace(s.request.grammar, constraint_vocabulary_, !s.request.starts_in_reasoning);
    s.masked_logits.assign(logits.begin(), logits.end());
    if (!s.constraint->mask(s.masked_logits)) {
      return finish(s, FinishReason::Error, "no token can continue a reply in the requested response format");
    }
    logits = s.masked_logits;
  }
  emit(s, s.sampler.sample(logits, TokenHistory(s.tokens, static_cast<size_t>(s.prompt_size))), logits);
}

// Appends `token` (drawn from `logits`, which also give its logprob) and streams what it completes.
void Scheduler::emit(Sequence& s, int32_t token, std::span<const float> logits) {
  if (s.constraint) s.constraint->accept(token);
  s.tokens.push_back(token);
  {
    std::lock_guard lock(stats_mutex_);
    ++stats_.generated_tokens_total;
  }

  GenerationEvent event;
  if (s.request.top_logprobs >= 0) {
    TokenLogprob entry{tokenizer_.token_bytes(token), token_logprob(logits, token), {}};
    if (s.request.top_logprobs > 0) {
      for (auto [id, logprob] : top_logprobs(logits, s.request.top_logprobs)) {
        entry.top.emplace_back(tokenizer_.token_bytes(id), logprob);
      }
    }
    event.logprobs.push_back(std::move(entry));
  }
  StopResult result = s.stop.push(token, s.decoder.push(token));
  std::string text = std::move(result.text);
  FinishReason reason = FinishReason::Stop;
  bool ending = result.stop;
  if (ending) {
    reason = result.reason == StopReason::MaxTokens ? FinishReason::Length : FinishReason::Stop;
    if (s.constraint && s.constraint->finished()) reason = FinishReason::Stop;  // complete on the last token
    // Bytes of a character the budget cut off are output too (as U+FFFD), as the decoder promises.
    if (reason == FinishReason::Length) text += s.decoder.flush();
  } else if (s.constraint && s.constraint->finished()) {
    ending = true;  // the reply is complete and nothing may follow: no need to sample end-of-sequence
    text += s.stop.flush() + s.decoder.flush();
  } else if (static_cast<int64_t>(s.tokens.size()) >= options_.context) {
    ending = true;
    reason = FinishReason::Length;
    text += s.stop.flush() + s.decoder.flush();
  }
  auto route = [&](const std::vector<ChannelText>& pieces) {
    for (const auto& piece : pieces) (piece.channel == TextChannel::Reasoning ? event.reasoning : event.content) += piece.text;
  };
  if (s.request.split_reasoning) {
    route(s.splitter.push(text));
    if (ending) route(s.splitter.flush());
  } else {
    event.content = std::move(text);
  }
  if (!ending) {
    event.generated_tokens = s.generated();
    s.stream->push(std::move(event));
    return;
  }
  event.finished = true;
  event.reason = reason;
  event.prompt_tokens = s.prompt_size;
  event.generated_tokens = s.generated();
  release_kv(s);
  s.done = true;
  --in_flight_;
  s.stream->push(std::move(event));
}

void Scheduler::finish(Sequence& s, FinishReason reason, std::string error) {
  if (s.done) return;
  GenerationEvent event;
  event.finished = true;
  event.reason = reason;
  event.error = std::move(error);
  event.prompt_tokens = s.prompt_size;
  event.generated_tokens = s.generated();
  if (reason == FinishReason::Timeout) {
    // Held-back text is real output once generation ends for a reason of its own.
    std::string rest = s.stop.flush();
    if (s.request.split_reasoning) {
      for (auto& piece : s.splitter.push(rest)) (piece.channel == TextChannel::Reasoning ? event.reasoning : event.content) += piece.text;
      for (auto& piece : s.splitter.flush()) (piece.channel == TextChannel::Reasoning ? event.reasoning : event.content) += piece.text;
    } else {
      event.content = std::move(rest);
    }
  }
  release_kv(s);
  s.done = true;
  --in_flight_;
  s.stream->push(std::move(event));
}

void Scheduler::fail_batch(const std::vector<Sequence*>& owners, const std::string& message) {
  for (Sequence* s : owners) finish(*s, FinishReason::Error, message);
}

void Scheduler::publish_stats() {
  std::lock_guard lock(stats_mutex_);
  stats_.running = static_cast<int64_t>(running_.size());
  stats_.kv_blocks_used = cache_.total_blocks() - cache_.free_blocks();
  stats_.kv_blocks_cached = cache_.cached_blocks();
}

}  // namespace retort
