#include "engine/sampler.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>

#include "util/error.h"

namespace retort {
namespace {

// Penalties are usually off; skipping the sort of previous_tokens then saves time per token.
bool any_penalty(const SamplingParams& params) {
  return params.repetition_penalty != 1.0f || params.frequency_penalty != 0.0f || params.presence_penalty != 0.0f;
}

// The largest non-NaN logit; -inf when there is none. Eight running maxima instead of one let
// the compiler use vector max instructions.
float max_logit(std::span<const float> logits) {
  constexpr size_t kLanes = 8;
  float lanes[kLanes];
  std::fill(std::begin(lanes), std::end(lanes), -std::numeric_limits<float>::infinity());
  size_t index = 0;
  for (; index + kLanes <= logits.size(); index += kLanes) {
    for (size_t lane = 0; lane < kLanes; ++lane) lanes[lane] = std::max(lanes[lane], logits[index + lane]);
  }
  float best = *std::max_element(std::begin(lanes), std::end(lanes));
  for (; index < logits.size(); ++index) best = std::max(best, logits[index]);
  return best;
}

// log Σ exp(logit), computed around the maximum so it neither overflows nor underflows.
double log_sum_exp(std::span<const float> logits) {
  float max_value = max_logit(logits);
  require(std::isfinite(max_value), ErrorKind::Internal, "no logit is finite (all are NaN or infinite)");
  double sum = 0.0;
  for (float logit : logits) {
    if (!std::isnan(logit)) sum += std::exp(static_cast<double>(logit) - max_value);
  }
  return max_value + std::log(sum);
}

}  // namespace

void SamplingParams::validate() const {
  require(std::isfinite(temperature) && temperature >= 0.0f, ErrorKind::InvalidInput,
          "temperature must be 0 (greedy) or positive, got {}", temperature);
  require(top_p > 0.0f && top_p <= 1.0f, ErrorKind::InvalidInput, "top_p must be in (0, 1], got {}", top_p);
  require(top_k >= 0, ErrorKind::InvalidInput, "top_k must be 0 (off) or positive, got {}", top_k);
  require(min_p >= 0.0f && min_p <= 1.0f, ErrorKind::InvalidInput, "min_p must be in [0, 1], got {}", min_p);
  require(std::isfinite(repetition_penalty) && repetition_penalty > 0.0f, ErrorKind::InvalidInput,
          "repetition_penalty must be positive (1 = off), got {}", repetition_penalty);
  require(std::isfinite(frequency_penalty), ErrorKind::InvalidInput, "frequency_penalty must be finite, got {}",
          frequency_penalty);
  require(std::isfinite(presence_penalty), ErrorKind::InvalidInput, "presence_penalty must be finite, got {}",
          presence_penalty);
}

namespace {

// Calls visit(token, count) once per distinct token of `tokens`. Sorting groups equal ids, so there
// is no vocabulary-sized counter per call.
template <class Visit>
void for_each_distinct(std::span<const int32_t> tokens, int64_t vocab_size, Visit&& visit) {
  std::vector<int32_t> sorted(tokens.begin(), tokens.end());
  std::sort(sorted.begin(), sorted.end());
  for (size_t run_start = 0; run_start < sorted.size();) {
    const int32_t token = sorted[run_start];
    size_t run_end = run_start;
    while (run_end < sorted.size() && sorted[run_end] == token) ++run_end;
    require(token >= 0 && token < vocab_size, ErrorKind::OutOfRange,
            "previous token id {} is outside the vocabulary [0, {})", token, vocab_size);
    visit(token, static_cast<float>(run_end - run_start));
    run_start = run_end;
  }
}

}  // namespace

void apply_penalties(std::span<float> logits, TokenHistory history, const SamplingParams& params) {
  const auto vocab_size = static_cast<int64_t>(logits.size());
  if (params.repetition_penalty != 1.0f) {
    for_each_distinct(history.tokens, vocab_size, [&](int32_t token, float) {
      float& logit = logits[static_cast<size_t>(token)];
      logit = logit > 0.0f ? logit / params.repetition_penalty : logit * params.repetition_penalty;
    });
  }
  if (params.frequency_penalty != 0.0f || params.presence_penalty != 0.0f) {
    for_each_distinct(history.generated(), vocab_size, [&](int32_t token, float count) {
      logits[static_cast<size_t>(token)] -= count * params.frequency_penalty + params.presence_penalty;
    });
  }
}

int32_t argmax(std::span<const float> logits) {
  int64_t best = -1;
  for (size_t token = 0; token < logits.size(); ++token) {
    // Strictly greater keeps the lowest id among ties; NaN compares false and is skipped.
    if (best < 0 ? !std::isnan(logits[token]) : logits[token] > logits[static_cast<size_t>(best)])
      best = static_cast<int64_t>(token);
  }
  require(best >= 0, ErrorKind::Internal, "argmax over {} logits that are all NaN", logits.size());
  return static_cast<int32_t>(best);
}

float token_logprob(std::span<const float> logits, int32_t token) {
  require(token >= 0 && static_cast<size_t>(token) < logits.size(), ErrorKind::OutOfRange,
          "token id {} is outside the vocabulary [0, {})", token, logits.size());
  return static_cast<float>(logits[static_cast<size_t>(token)] - log_sum_exp(logits));
}

std::vector<std::pair<int32_t, float>> top_logprobs(std::span<const float> logits, int n) {
  size_t count = std::min(static_cast<size_t>(std::max(n, 0)), logits.size());
  if (count == 0) return {};
  double normalizer = log_sum_exp(logits);
  std::vector<int32_t> tokens;
  tokens.reserve(logits.size());
  for (size_t token = 0; token < logits.size(); ++token) {
    if (!std::isnan(logits[token])) tokens.push_back(static_cast<int32_t>(token));
  }
  count = std::min(count, tokens.size());
  std::partial_sort(tokens.begin(), tokens.begin() + static_cast<std::ptrdiff_t>(count), tokens.end(),
                    [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); });
  std::vector<std::pair<int32_t, float>> best;
  best.reserve(count);
  for (size_t i = 0; i < count; ++i)
    best.emplace_back(tokens[i], static_cast<float>(logits[static_cast<size_t>(tokens[i])] - normalizer));
  return best;
}

Sampler::Sampler(SamplingParams params, int64_t vocab_size)
    : params_(params), vocab_size_(vocab_size), rng_(params.seed) {
  params_.validate();
  require(vocab_size > 0 && vocab_size <= std::numeric_limits<int32_t>::max(), ErrorKind::InvalidInput,
          "vocabulary size must be in [1, 2^31), got {}", vocab_size);
}

// The logits with the penalties applied (a copy in adjusted_logits_ when there are any).
std::span<const float> Sampler::penalized(std::span<const float> logits, TokenHistory history) {
  require(static_cast<int64_t>(logits.size()) == vocab_size_, ErrorKind::Internal,
          "sampler expected {} logits (the vocabulary), got {}", vocab_size_, logits.size());
  if (!any_penalty(params_) || history.tokens.empty()) return logits;
  adjusted_logits_.assign(logits.begin(), logits.end());
  apply_penalties(adjusted_logits_, history, params_);
  return adjusted_logits_;
}

// A temperature so small that 1/T overflows is greedy in all but name.
bool Sampler::draws_greedily() const { return params_.greedy() || !std::isfinite(1.0f / params_.temperature); }

int32_t Sampler::sample(std::span<const float> logits, TokenHistory history) {
  const std::span<const float> scores = penalized(logits, history);
  if (draws_greedily()) return argmax(scores);
  compute_weights(scores);
  collect_candidates();
  return draw();
}

void Sampler::distribution(std::span<const float> logits, TokenHistory history, TokenDistribution& out) {
  const std::span<const float> scores = penalized(logits, history);
  out.tokens.clear();
  out.probabilities.clear();
  if (draws_greedily()) {
    out.tokens.push_back(argmax(scores));
    out.probabilities.push_back(1.0);
    return;
  }
  compute_weights(scores);
  collect_candidates();
  double total = 0.0;
  for (const Candidate& candidate : candidates_) total += candidate.weight;
  // Sorted by id, so probability() is a binary search; the draw walks the same order every time.
  std::sort(candidates_.begin(), candidates_.end(), [](const Candidate& a, const Candidate& b) { return a.token < b.token; });
  for (const Candidate& candidate : candidates_) {
    out.tokens.push_back(candidate.token);
    out.probabilities.push_back(candidate.weight / total);
  }
}

double TokenDistribution::probability(int32_t token) const {
  const auto it = std::lower_bound(tokens.begin(), tokens.end(), token);
  return it != tokens.end() && *it == token ? probabilities[static_cast<size_t>(it - tokens.begin())] : 0.0;
}

int32_t Sampler::draw(const TokenDistribution& d, const TokenDistribution* minus) {
  require(!d.tokens.empty(), ErrorKind::Internal, "drawing from an empty distribution");
  const auto mass = [&](size_t i) {
    return minus == nullptr ? d.probabilities[i] : std::max(0.0, d.probabilities[i] - minus->probability(d.tokens[i]));
  };
  double total = 0.0;
  for (size_t i = 0; i < d.tokens.size(); ++i) total += mass(i);
  if (!(total > 0.0)) return draw(d);  // d ≤ minus everywhere: d equals it, so draw from d itself
  const double target = uniform_01() * total;
  double cumulative = 0.0;
  for (size_t i = 0; i < d.tokens.size(); ++i) {
    cumulative += mass(i);
    if (target < cumulative && mass(i) > 0.0) return d.tokens[i];
  }
  for (size_t i = d.tokens.size(); i-- > 0;)  // target landed in the rounding gap at the top
    if (mass(i) > 0.0) return d.tokens[i];
  return d.tokens.back();
}

Sampler::Sample Sampler::sample_with_logprob(std::span<const float> logits, TokenHistory history) {
  int32_t token = sample(logits, history);
  return {token, token_logprob(logits, token)};
}

bool Sampler::more_likely(const Candidate& a, const Candidate& b) {
  return a.weight > b.weight || (a.weight == b.weight && a.token < b.token);
}

namespace {

// Scaled logits are clamped here before exp, and weights below kSmallestWeight (about e^-85) are
// dropped: relative to the best token's weight of 1, 152k of them hold under 1e-32 of the
// probability.
constexpr float kLowestScaledLogit = -87.0f;
constexpr float kSmallestWeight = 1e-37f;

// e^x for kLowestScaledLogit <= x <= 0 in plain float arithmetic, so it gives the same bits on
// every IEEE-754 platform (libm's expf is not specified to the last bit) and the weights loop
// vectorizes. x = n·ln2 + r with |r| <= ln2/2; e^r by its Taylor series to r^6 (relative error
// about 1e-7, far below what sampling can see); 2^n built in the exponent bits. exp(0) is exactly 1.
float exp_nonpositive(float x) {
  float scaled = x * 1.44269504f;                // x / ln 2
  auto n = static_cast<int32_t>(scaled - 0.5f);  // round to nearest (scaled <= 0)
  float whole = static_cast<float>(n);
  float r = (x - whole * 0.693145752f) - whole * 1.42860677e-6f;  // ln 2 split in two for accuracy
  float series =
      1.0f + r * (1.0f + r * (0.5f + r * (1.0f / 6 + r * (1.0f / 24 + r * (1.0f / 120 + r * (1.0f / 720))))));
  return series * std::bit_cast<float>(static_cast<uint32_t>(n + 127) << 23);
}

// Positive floats order like their bit patterns, so the top bits (exponent and 3 mantissa bits)
// bucket weights on a log scale, each bucket about 9% wide; weights are at most 1.
constexpr int kBucketShift = 20;
constexpr size_t kBucketCount = (std::bit_cast<uint32_t>(1.0f) >> kBucketShift) + 1;
size_t bucket_of(float weight) {
  return std::min<size_t>(std::bit_cast<uint32_t>(weight) >> kBucketShift, kBucketCount - 1);
}

}  // namespace

// weights_[token] = exp((logit - max) / temperature), in (0, 1], 1 for the best token.
void Sampler::compute_weights(std::span<const float> logits) {
  float max_value = max_logit(logits);
  require(std::isfinite(max_value), ErrorKind::Internal, "no logit is finite (all are NaN or infinite)");
  // NaN would reach a float-to-int conversion below; a broken model's NaNs become "never".
  uint32_t nan_count = 0;  // counted, not searched for, so the loop vectorizes
  for (float logit : logits) nan_count += std::isnan(logit) ? 1u : 0u;
  if (nan_count > 0) {
    if (logits.data() != adjusted_logits_.data()) adjusted_logits_.assign(logits.begin(), logits.end());
    for (float& logit : adjusted_logits_) logit = std::isnan(logit) ? -std::numeric_limits<float>::infinity() : logit;
    logits = adjusted_logits_;
  }
  float inverse_temperature = 1.0f / params_.temperature;
  weights_.resize(logits.size());
  // Two passes because each one alone vectorizes: GCC will not combine the clamp's select with
  // the float-to-int conversion in one vector loop (it may trap). -inf clamps too.
  const float* source = logits.data();
  float* weights = weights_.data();
  const size_t count = logits.size();
  for (size_t token = 0; token < count; ++token)
    weights[token] = std::max((source[token] - max_value) * inverse_temperature, kLowestScaledLogit);
  for (size_t token = 0; token < count; ++token) weights[token] = exp_nonpositive(weights[token]);
}

// Fills candidates_ with the tokens that survive min-p, top-k and top-p, without sorting the
// vocabulary: a log-scale histogram of the weights says which buckets can hold survivors, and
// only those are collected and sorted. Without truncation they stay in id order.
void Sampler::collect_candidates() {
  const bool by_count = params_.top_k > 0;
  const bool by_mass = params_.top_p < 1.0f;
  float threshold = std::max(params_.min_p, kSmallestWeight);  // min-p: p / p_max >= min_p
  double total = 0.0;                                          // the survivors' weight
  if (by_count || by_mass) {
    size_t boundary = find_boundary_bucket(threshold, total);
    // A bucket's smallest member has the bucket's bits followed by zeros.
    threshold = std::max(threshold, std::bit_cast<float>(static_cast<uint32_t>(boundary << kBucketShift)));
  }
  candidates_.clear();
  for (size_t token = 0; token < weights_.size(); ++token) {
    if (weights_[token] >= threshold) candidates_.push_back({static_cast<int32_t>(token), weights_[token]});
  }
  if (!by_count && !by_mass) return;
  std::sort(candidates_.begin(), candidates_.end(), more_likely);
  if (by_count) {
    // top-p then applies to what top-k kept, whose weight the histogram's total does not know.
    candidates_.resize(std::min(candidates_.size(), static_cast<size_t>(params_.top_k)));
    total = 0.0;
    for (const Candidate& candidate : candidates_) total += candidate.weight;
  }
  if (by_mass) keep_nucleus(params_.top_p * total);
}

// The lowest histogram bucket that top-k (by count) or else top-p (by mass) can reach among the
// weights at or above `threshold`; also sums those weights into `total`.
size_t Sampler::find_boundary_bucket(float threshold, double& total) {
  bucket_counts_.assign(kBucketCount, 0);
  bucket_weights_.assign(kBucketCount, 0.0);
  for (float weight : weights_) {
    if (!(weight >= threshold)) continue;
    size_t bucket = bucket_of(weight);
    bucket_counts_[bucket] += 1;
    bucket_weights_[bucket] += weight;
  }
  total = 0.0;
  for (double bucket_weight : bucket_weights_) total += bucket_weight;
  // The mass target stops a hair past top_p so rounding in the bucket sums cannot leave the
  // exact walk in keep_nucleus short.
  const double wanted = params_.top_p * total * (1.0 + 1e-9);
  const auto k = static_cast<size_t>(params_.top_k);
  size_t count = 0;
  double mass = 0.0;
  for (size_t bucket = kBucketCount; bucket-- > 0;) {
    count += bucket_counts_[bucket];
    mass += bucket_weights_[bucket];
    if (k > 0 ? count >= k : mass > wanted) return bucket;
  }
  return 0;
}

// Keeps the smallest most-likely-first prefix whose weight reaches `wanted` (at least one token).
void Sampler::keep_nucleus(double wanted) {
  double cumulative = 0.0;
  for (size_t i = 0; i < candidates_.size(); ++i) {
    cumulative += candidates_[i].weight;
    if (cumulative >= wanted) {
      candidates_.resize(i + 1);
      return;
    }
  }
}

// Inverse-CDF draw over the surviving candidates in their current (deterministic) order.
int32_t Sampler::draw() {
  double total = 0.0;
  for (const Candidate& candidate : candidates_) total += candidate.weight;
  double target = uniform_01() * total;
  double cumulative = 0.0;
  for (const Candidate& candidate : candidates_) {
    cumulative += candidate.weight;
    if (target < cumulative) return candidate.token;
  }
  return candidates_.back().token;  // target landed in the rounding gap at the very top
}

// 53 random bits scaled to [0, 1): exact and identical on every platform.
double Sampler::uniform_01() { return static_cast<double>(rng_() >> 11) * 0x1.0p-53; }

}  // namespace retort
