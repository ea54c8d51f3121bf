#include "eval/draft_speedup.h"

#include <algorithm>

#include "engine/generation.h"
#include "engine/speculative.h"
#include "util/error.h"

namespace retort {

namespace {

int64_t longest(const std::vector<std::vector<int32_t>>& prompts) {
  int64_t most = 0;
  for (const auto& prompt : prompts) most = std::max<int64_t>(most, static_cast<int64_t>(prompt.size()));
  return most;
}

struct Totals {
  int64_t generated = 0;
  double decode_seconds = 0;
  SpeculationStats speculation;
};

Totals generate_all(Transformer& target, Drafter* drafter, const Tokenizer& tokenizer,
                    const std::vector<std::vector<int32_t>>& prompts, int decode_tokens) {
  GenerationOptions options;
  options.sampling.temperature = 0;
  options.max_tokens = decode_tokens;
  options.drafter = drafter;
  Totals totals;
  KvCache cache(target.config(), std::min(target.config().max_positions, longest(prompts) + decode_tokens + 1));
  for (const auto& prompt : prompts) {
    CachedSequence sequence;  // a fresh sequence: nothing is reused from the last prompt
    const GenerationStats stats = generate(target, cache, sequence, tokenizer, prompt, options, [](std::string_view) {});
    cache.release(sequence.kv);
    if (drafter != nullptr) drafter->release(drafter->single_sequence());
    totals.generated += stats.generated_tokens;
    totals.decode_seconds += stats.decode_seconds;
    totals.speculation += stats.speculation;
  }
  return totals;
}

}  // namespace

DraftSpeedup measure_draft_speedup(Transformer& target, Transformer& draft, const Tokenizer& tokenizer,
                                   const std::vector<std::vector<int32_t>>& prompts, int decode_tokens, int draft_tokens) {
  require(!prompts.empty() && decode_tokens >= 1, ErrorKind::InvalidInput,
          "measuring a draft needs at least one prompt and one token to decode");
  Drafter drafter(draft, target.config().vocab_size,
                  std::min(draft.config().max_positions, longest(prompts) + decode_tokens + 1),
                  draft_tokens, DType::F32);
  // The target alone first, then with the draft, on the same prompts (the first run also warms up).
  const Totals alone = generate_all(target, nullptr, tokenizer, prompts, decode_tokens);
  const Totals drafted = generate_all(target, &drafter, tokenizer, prompts, decode_tokens);
  DraftSpeedup result;
  result.draft_tokens = draft_tokens;
  result.acceptance_rate = drafted.speculation.acceptance_rate();
  result.tokens_per_forward = drafted.speculation.tokens_per_forward();
  result.decode_tokens_per_second = static_cast<double>(drafted.generated) / std::max(drafted.decode_seconds, 1e-9);
  result.alone_decode_tokens_per_second = static_cast<double>(alone.generated) / std::max(alone.decode_seconds, 1e-9);
  return result;
}

}  // namespace retort
