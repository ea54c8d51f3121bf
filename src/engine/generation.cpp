#include "engine/generation.h"

#include <algorithm>

#include "engine/speculative.h"
#include "util/error.h"
#include "util/timer.h"

namespace retort {

void prefill(Transformer& model, KvCache& cache, CachedSequence& sequence, std::span<const int32_t> tokens,
             LogitsWanted wanted, int64_t chunk, std::vector<float>& logits) {
  const int64_t vocab = model.config().vocab_size;
  const int64_t total = sequence.kv.length + static_cast<int64_t>(tokens.size());
  require(total <= cache.capacity_tokens() && cache.reserve(sequence.kv, total), ErrorKind::OutOfRange,
          "the prompt needs {} positions but the context holds {}; shorten the prompt or raise --ctx", total,
          cache.capacity_tokens());
  logits.clear();
  std::vector<float> rows;
  for (size_t begin = 0; begin < tokens.size(); begin += static_cast<size_t>(chunk)) {
    const size_t n = std::min(static_cast<size_t>(chunk), tokens.size() - begin);
    const bool last_chunk = begin + n == tokens.size();
    LogitsWanted chunk_wants = wanted == LogitsWanted::All ? LogitsWanted::All
                               : (last_chunk ? wanted : LogitsWanted::None);
    SequenceChunk item{&sequence.kv, tokens.subspan(begin, n), chunk_wants};
    const int64_t produced = model.forward({&item, 1}, cache, rows);
    logits.insert(logits.end(), rows.begin(), rows.begin() + produced * vocab);
  }
  sequence.tokens.insert(sequence.tokens.end(), tokens.begin(), tokens.end());
}

std::vector<int32_t> end_of_sequence_ids(const Tokenizer& tokenizer, const ModelConfig& config) {
  std::vector<int32_t> ids = tokenizer.eos_ids();
  for (int64_t id : config.eos_token_ids) ids.push_back(static_cast<int32_t>(id));
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  return ids;
}

namespace {

// Keeps the cached prefix the new prompt shares (always leaving at least one token to evaluate,
// since its logits are needed) and drops the rest.
int64_t reuse_common_prefix(CachedSequence& sequence, std::span<const int32_t> prompt) {
  size_t common = 0;
  while (common < sequence.tokens.size() && common + 1 < prompt.size() && sequence.tokens[common] == prompt[common]) {
    ++common;
  }
  sequence.tokens.resize(common);
  sequence.kv.length = static_cast<int64_t>(common);  // later positions are overwritten
  return static_cast<int64_t>(common);
}

}  // namespace

namespace {

// The tokens that follow `pending` (sampled, not yet evaluated), which this evaluates: one drawn
// from the target's next logits, or with a drafter, the proposal's kept prefix and the target's
// next draw (one verification forward). Empty when the context cannot hold `pending`.
std::vector<int32_t> next_tokens(Transformer& model, KvCache& cache, CachedSequence& sequence, int32_t pending,
                                 size_t prompt_size, const GenerationOptions& options, Sampler& sampler,
                                 Sampler& draft_sampler, GenerationStats& stats) {
  const int64_t room = cache.capacity_tokens() - sequence.kv.length - 1;  // positions after pending
  if (room < 0) return {};
  std::vector<float> logits;
  const int k = options.drafter == nullptr ? 0 : static_cast<int>(std::min<int64_t>(options.drafter->draft_tokens(), room));
  DraftProposal proposal;
  if (k > 0) {
    std::vector<int32_t> context = sequence.tokens;
    context.push_back(pending);
    DraftTask task{&options.drafter->single_sequence(), context, prompt_size, &draft_sampler, k, &proposal};
    options.drafter->propose({&task, 1});
  }
  if (proposal.tokens.empty()) {
    prefill(model, cache, sequence, std::span(&pending, 1), LogitsWanted::Last, 1, logits);
    return {sampler.sample(logits, TokenHistory(sequence.tokens, prompt_size))};
  }
  const int64_t before = sequence.kv.length;
  std::vector<int32_t> checked{pending};
  checked.insert(checked.end(), proposal.tokens.begin(), proposal.tokens.end());
  prefill(model, cache, sequence, checked, LogitsWanted::All, options.prefill_chunk, logits);
  const DraftVerdict verdict = verify_proposal(proposal, logits, model.config().vocab_size, sampler,
                                               sequence.tokens, prompt_size);
  // Positions past the kept tokens held rejected proposals: they are overwritten next time.
  sequence.kv.length = before + 1 + verdict.accepted;
  sequence.tokens.resize(static_cast<size_t>(sequence.kv.length));
  stats.speculation.proposed += static_cast<int64_t>(proposal.tokens.size());
  stats.speculation.accepted += verdict.accepted;
  stats.speculation.target_forwards += 1;
  stats.speculation.emitted += verdict.accepted + 1;
  std::vector<int32_t> tokens(proposal.tokens.begin(), proposal.tokens.begin() + verdict.accepted);
  tokens.push_back(verdict.next);
  return tokens;
}

}  // namespace

GenerationStats generate(Transformer& model, KvCache& cache, CachedSequence& sequence, const Tokenizer& tokenizer,
                         std::span<const int32_t> prompt, const GenerationOptions& options,
                         const std::function<void(std::string_view)>& on_text, const std::atomic<bool>* cancel) {
  require(!prompt.empty(), ErrorKind::InvalidInput, "the prompt is empty; give some text to continue");
  require(static_cast<int64_t>(prompt.size()) < cache.capacity_tokens(), ErrorKind::OutOfRange,
          "the prompt has {} tokens but the context is {} tokens; shorten it or raise --ctx", prompt.size(),
          cache.capacity_tokens());
  GenerationStats stats;
  stats.reused_tokens = reuse_common_prefix(sequence, prompt);
  auto fresh = prompt.subspan(static_cast<size_t>(stats.reused_tokens));
  stats.prompt_tokens = static_cast<int64_t>(fresh.size());

  Timer timer;
  std::vector<float> logits;
  prefill(model, cache, sequence, fresh, LogitsWanted::Last, options.prefill_chunk, logits);
  stats.prefill_seconds = timer.seconds();

  const int64_t vocab = model.config().vocab_size;
  Sampler sampler(options.sampling, vocab);
  Sampler draft_sampler = make_draft_sampler(options.sampling, options.drafter ? options.drafter->vocab() : vocab);
  StopChecker stop(end_of_sequence_ids(tokenizer, model.config()), options.stop_strings, options.max_tokens);
  StreamingDecoder decoder(tokenizer);
  timer.reset();
  std::vector<int32_t> tokens{sampler.sample(logits, TokenHistory(sequence.tokens, prompt.size()))};
  while (!tokens.empty()) {
    for (int32_t token : tokens) {
      ++stats.generated_tokens;
      StopResult result = stop.push(token, decoder.push(token));
      if (!result.text.empty()) on_text(result.text);
      if (result.stop) {
        stats.reason = result.reason;
        tokens.clear();
        break;
      }
    }
    if (tokens.empty()) break;
    if (cancel != nullptr && cancel->load()) {
      stats.cancelled = true;
      break;
    }
    tokens = next_tokens(model, cache, sequence, tokens.back(), prompt.size(), options, sampler, draft_sampler, stats);
    if (tokens.empty()) {
      stats.context_full = true;
      stats.reason = StopReason::MaxTokens;
    }
  }
  std::string rest = stop.flush();
  if (!rest.empty()) on_text(rest);
  stats.decode_seconds = timer.seconds();
  return stats;
}

std::string format_speed(const GenerationStats& stats, uint64_t weight_bytes) {
  const double prompt_rate = stats.prefill_seconds > 0 ? stats.prompt_tokens / stats.prefill_seconds : 0;
  const double decode_rate = stats.decode_seconds > 0 ? stats.generated_tokens / stats.decode_seconds : 0;
  std::string line =
      fmt::format("prompt: {} tokens, {:.1f} tok/s · generation: {} tokens, {:.1f} tok/s, {:.2f} GB/s of weights",
                  stats.prompt_tokens, prompt_rate, stats.generated_tokens, decode_rate,
                  decode_rate * static_cast<double>(weight_bytes) / 1e9);
  const SpeculationStats& draft = stats.speculation;
  if (draft.target_forwards > 0)
    line += fmt::format(" · draft: {:.0f} % of {} proposed tokens accepted, {:.2f} tokens per target forward",
                        100.0 * draft.acceptance_rate(), draft.proposed, draft.tokens_per_forward());
  return line;
}

}  // namespace retort
