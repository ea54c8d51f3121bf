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

int64_t for_each_scored_window(Transformer& model, std::span<const int32_t> tokens, const PerplexityOptions& options,
                               const std::function<void(const ScoredWindow&)>& visit) {
  const int64_t context = options.context;
  require(context >= 4, ErrorKind::InvalidInput, "--ctx must be at least 4 tokens (got {})", context);
  int64_t windows = static_cast<int64_t>(tokens.size()) / context;
  require(windows > 0, ErrorKind::InvalidInput, "the text has {} tokens, fewer than one window of {}; use a longer "
          "file or a smaller --ctx", tokens.size(), context);
  if (options.max_chunks > 0) windows = std::min(windows, options.max_chunks);
  const int64_t vocab = model.config().vocab_size;
  const int64_t first_scored = context / 2;
  KvCache cache(model.config(), context);
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
    // Position p predicts token p + 1 of the window; the last position has nothing to predict.
    const auto scored = static_cast<size_t>(context - 1 - first_scored);
    visit(ScoredWindow{w, vocab, std::span<const float>(logits).subspan(static_cast<size_t>(first_scored * vocab), scored * vocab),
                       tokens.subspan(static_cast<size_t>(w * context + first_scored + 1), scored)});
  }
  return windows;
}

PerplexityResult finish_perplexity(PerplexityResult result, double nll_sum, double nll_sum_squares) {
  const auto n = static_cast<double>(result.scored_tokens);
  const double mean = nll_sum / n;
  const double variance = std::max(0.0, nll_sum_squares / n - mean * mean);
  result.perplexity = std::exp(mean);
  result.standard_error = result.perplexity * std::sqrt(variance / std::max(1.0, n - 1));
  return result;
}

PerplexityResult measure_perplexity(Transformer& model, std::span<const int32_t> tokens, const PerplexityOptions& options,
                                    const std::function<void(int64_t, int64_t, double)>& progress) {
  PerplexityResult result;
  double sum = 0, sum_squares = 0;
  int64_t total_windows = static_cast<int64_t>(tokens.size()) / std::max<int64_t>(options.context, 1);
  if (options.max_chunks > 0) total_windows = std::min(total_windows, options.max_chunks);
  for_each_scored_window(model, tokens, options, [&](const ScoredWindow& window) {
    double window_sum = 0;
    for (size_t i = 0; i < window.targets.size(); ++i) {
      const double nll = -log_probability(window.logits.subspan(i * static_cast<size_t>(window.vocab), static_cast<size_t>(window.vocab)),
                                          window.targets[i]);
      window_sum += nll;
      sum += nll;
      sum_squares += nll * nll;
      ++result.scored_tokens;
    }
    result.chunk_nll.push_back(window_sum / static_cast<double>(window.targets.size()));
    ++result.chunks;
    if (progress) progress(window.index + 1, total_windows, std::exp(sum / static_cast<double>(result.scored_tokens)));
  });
  return finish_perplexity(result, sum, sum_squares);
}

}  // namespace retort
