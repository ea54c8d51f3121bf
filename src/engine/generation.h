#pragma once
// The single-sequence generation loop behind `retort run`, `retort chat` and `retort logits`:
// chunked prefill of the prompt, then sample → stop check → stream text, one token at a time.
// (The server's scheduler batches many sequences through the same forward instead.)
#include <atomic>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "engine/sampler.h"
#include "engine/stop_conditions.h"
#include "model/transformer.h"
#include "tokenizer/tokenizer.h"

namespace retort {

class Drafter;

struct GenerationOptions {
  SamplingParams sampling;
  int max_tokens = 1024;
  std::vector<std::string> stop_strings;
  int64_t prefill_chunk = 512;  // tokens per forward call while prefilling
  Drafter* drafter = nullptr;   // speculative decoding with this draft model (engine/speculative.h)
};

// Speculative decoding's counters, for the stats line and /metrics.
struct SpeculationStats {
  int64_t proposed = 0;         // draft tokens offered for verification
  int64_t accepted = 0;         // of those, kept
  int64_t target_forwards = 0;  // verification forwards (one per sequence and round)
  int64_t emitted = 0;          // tokens those forwards produced (accepted + one drawn by the target)
  double acceptance_rate() const { return proposed > 0 ? static_cast<double>(accepted) / proposed : 0.0; }
  double tokens_per_forward() const { return target_forwards > 0 ? static_cast<double>(emitted) / target_forwards : 0.0; }
  SpeculationStats& operator+=(const SpeculationStats& more) {
    proposed += more.proposed;
    accepted += more.accepted;
    target_forwards += more.target_forwards;
    emitted += more.emitted;
    return *this;
  }
};

struct GenerationStats {
  int64_t prompt_tokens = 0;     // evaluated this call (after any reused cached prefix)
  int64_t reused_tokens = 0;     // prompt tokens already in the cache from an earlier turn
  int64_t generated_tokens = 0;
  double prefill_seconds = 0;
  double decode_seconds = 0;
  StopReason reason = StopReason::None;
  bool cancelled = false;
  bool context_full = false;
  SpeculationStats speculation;
};

// A sequence's cache and the tokens it holds, so a later prompt sharing a prefix (the next chat
// turn) only evaluates what is new.
struct CachedSequence {
  KvSequence kv;
  std::vector<int32_t> tokens;
};

// Evaluates tokens after what the sequence holds, in chunks; fills `logits` with the rows asked
// for (All: one per token; Last: the final one). Errors if the cache cannot hold them.
void prefill(Transformer& model, KvCache& cache, CachedSequence& sequence, std::span<const int32_t> tokens,
             LogitsWanted wanted, int64_t chunk, std::vector<float>& logits);

// The union of the tokenizer's and the model config's end-of-sequence ids.
std::vector<int32_t> end_of_sequence_ids(const Tokenizer& tokenizer, const ModelConfig& config);

// Generates after `prompt`, reusing the longest common prefix already in `sequence`. Text goes to
// on_text as soon as it is safe to show (whole UTF-8 characters, not part of a stop string).
GenerationStats generate(Transformer& model, KvCache& cache, CachedSequence& sequence, const Tokenizer& tokenizer,
                         std::span<const int32_t> prompt, const GenerationOptions& options,
                         const std::function<void(std::string_view)>& on_text,
                         const std::atomic<bool>* cancel = nullptr);

// "prompt 12.3 tok/s · generation 8.1 tok/s (2.4 GB/s of weights)" for the end of a run.
std::string format_speed(const GenerationStats& stats, uint64_t weight_bytes);

}  // namespace retort
