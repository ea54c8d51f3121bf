#pragma once
// Perplexity the way llama.cpp's `perplexity` tool measures it, so numbers compare: the text is
// tokenized once and cut into non-overlapping windows of `context` tokens; each window is
// evaluated from an empty cache and only its second half is scored (every scored token sees at
// least context/2 tokens before it).
#include <functional>
#include <optional>
#include <span>
#include <vector>

#include "model/transformer.h"

namespace retort {

struct PerplexityOptions {
  int64_t context = 512;
  int64_t max_chunks = 0;  // 0: all windows
  std::optional<int32_t> bos_id;  // replaces each window's first token when the model wants BOS
};

struct PerplexityResult {
  double perplexity = 0;
  double standard_error = 0;  // of the perplexity (delta method over per-token NLLs)
  int64_t scored_tokens = 0;
  int64_t chunks = 0;
  std::vector<double> chunk_nll;  // mean NLL per window, in order
};

// One window's scored positions: logits [scored × vocab] and, for each, the token that followed.
struct ScoredWindow {
  int64_t index = 0;
  int64_t vocab = 0;
  std::span<const float> logits;
  std::span<const int32_t> targets;
};

// Evaluates the windows measure_perplexity scores, handing each one's scored logits to `visit`.
// Returns the number of windows.
int64_t for_each_scored_window(Transformer& model, std::span<const int32_t> tokens, const PerplexityOptions& options,
                               const std::function<void(const ScoredWindow&)>& visit);

PerplexityResult measure_perplexity(Transformer& model, std::span<const int32_t> tokens, const PerplexityOptions& options,
                                    const std::function<void(int64_t done, int64_t total, double running_ppl)>& progress = {});

// Fills in the perplexity and its standard error from the NLL sums over result.scored_tokens.
PerplexityResult finish_perplexity(PerplexityResult result, double nll_sum, double nll_sum_squares);

// log softmax(logits)[target], computed stably in double.
double log_probability(std::span<const float> logits, int32_t target);

}  // namespace retort
