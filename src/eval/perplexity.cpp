#include "eval/perplexity.h"

#include <algorithm>
#include <cmath>

#include "util/error.h"

namespace retort {

double log_probability(std::span<const float> logits, int32_t target) {
  const float max_logit = *std::max_element(logits.begin(), logits.end());
  double total = 0;
  for (float logit : logits) total += std::exp(static_cast<double>(logit - max_logit));
  return static_cast<double>(logits[static_cast<size_t>(target)] - max_logit) - std::log(total);
}

PerplexityResult measure_perplexity(Transformer& model, std::span<const int32_t> tokens, const PerplexityOptions& options,
                                    const std::function<void(int64_t, int64_t, double)>& progress) {
  const int64_t context = options.context;
  require(context >= 4, ErrorKind::InvalidInput, "--ctx must be at least 4 tokens (got {})", context);
  int64_t windows = static_cast<int64_t>(tokens.size()) / context;
  require(windows > 0, ErrorKind::InvalidInput, "the text has {} tokens, fewer than one window of {}; use a longer "
          "file or a smaller --ctx", tokens.size(), context);
  if (options.max_chunks > 0) windows = std::min(windows, options.max_chunks);
  const int64_t vocab = model.config().vocab_size;
  KvCache cache(model.config(), context);
  PerplexityResult result;
  double sum = 0, sum_squares = 0;
  std::vector<int32_t> window(static_cast<size_t>(context));
  std::vector<float> logits;
  for (int64_t w = 0; w < windows; ++w) {
    std::copy_n(tokens.begin() + w * context, context, window.begin());
    if (options.bos_id) window[0] = *options.bos_id;
    KvSequence sequence;
    cache.reserve(sequence, context);
    SequenceChunk chunk{&sequence, window, LogitsWanted::All};
    model.forward({&chunk, 1}, cache, logits);
    cache.release(sequence);
    double window_sum = 0;
    for (int64_t position = context / 2; position + 1 < context; ++position) {
      const double nll = -log_probability(std::span(logits).subspan(static_cast<size_t>(position * vocab), vocab),
                                          tokens[static_cast<size_t>(w * context + position + 1)]);
      window_sum += nll;
      sum += nll;
      sum_squares += nll * nll;
      ++result.scored_tokens;
    }
    result.chunk_nll.push_back(window_sum / static_cast<double>(context - 1 - context / 2));
    ++result.chunks;
    if (progress) progress(w + 1, windows, std::exp(sum / static_cast<double>(result.scored_tokens)));
  }
  const auto n = static_cast<double>(result.scored_tokens);
  const double mean = sum / n;
  const double variance = std::max(0.0, sum_squares / n - mean * mean);
  result.perplexity = std::exp(mean);
  result.standard_error = result.perplexity * std::sqrt(variance / std::max(1.0, n - 1));
  return result;
}

}  // namespace retort
