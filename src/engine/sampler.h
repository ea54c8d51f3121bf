#pragma once
// Turns one step's logits into the next token: penalties, then greedy or
// temperature → top-k → min-p → top-p → a seeded draw.
//
// Reproducibility: the same params (seed included) and the same logits give the same tokens on
// every platform. The generator is std::mt19937_64 (its output is fixed by the standard) and
// uniform numbers come from its raw bits, never from std::*_distribution (implementation-defined).
// Probabilities come from a plain-float exp of retort's own rather than libm's. Candidates are
// ordered by (probability descending, token id ascending), a total order, before any cumulative
// walk, so no unspecified sort order leaks into the result.
//
// Cost per token over a 152k vocabulary: a few vectorized passes for the weights, one to collect
// the survivors, and for top-k / top-p a log-scale histogram that says which few need sorting;
// never a sort of the whole vocabulary.
#include <algorithm>
#include <cstdint>
#include <random>
#include <span>
#include <utility>
#include <vector>

namespace retort {

struct SamplingParams {
  // DeepSeek's recommendation for R1 and its distills: temperature 0.6, top-p 0.95.
  float temperature = 0.6f;
  float top_p = 0.95f;              // nucleus: smallest set of tokens with this much probability; 1 = off
  int top_k = 0;                    // keep the k most likely tokens; 0 = off
  float min_p = 0.0f;               // drop tokens less likely than min_p × the most likely one; 0 = off
  float repetition_penalty = 1.0f;  // Hugging Face semantics; 1 = off
  float frequency_penalty = 0.0f;   // OpenAI semantics: subtracted once per occurrence
  float presence_penalty = 0.0f;    // OpenAI semantics: subtracted once if the token occurred at all
  uint64_t seed = 0;                // 0 is an ordinary seed; the caller picks a random one if it wants
  bool greedy() const { return temperature <= 0; }

  // Throws retort::Error (InvalidInput) naming the first field out of range.
  void validate() const;
};

// The tokens of a sequence so far: its prompt (the first prompt_size), then what was generated.
// A plain list converts to a history with no prompt: every token counts as generated.
struct TokenHistory {
  std::span<const int32_t> tokens;
  size_t prompt_size = 0;
  TokenHistory() = default;
  TokenHistory(std::span<const int32_t> all, size_t prompt = 0) : tokens(all), prompt_size(std::min(prompt, all.size())) {}
  TokenHistory(const std::vector<int32_t>& all, size_t prompt = 0) : TokenHistory(std::span<const int32_t>(all), prompt) {}
  std::span<const int32_t> generated() const { return tokens.subspan(prompt_size); }
};

// Applies the three penalties in place, once per distinct token:
//   repetition (HF), over the prompt and the output:  logit > 0 ? logit / penalty : logit * penalty
//   frequency/presence (OpenAI), over the output only:  logit -= count × frequency + presence
// `retort run`, `chat` and `serve` all sample through this rule. Token ids outside the vocabulary
// throw retort::Error (OutOfRange).
void apply_penalties(std::span<float> logits, TokenHistory history, const SamplingParams& params);

// The most likely token; ties go to the lowest id; NaNs are ignored.
int32_t argmax(std::span<const float> logits);

// log-softmax of the logits at one token.
float token_logprob(std::span<const float> logits, int32_t token);

// The n most likely tokens with their log-softmax values, most likely first (ties: lowest id).
std::vector<std::pair<int32_t, float>> top_logprobs(std::span<const float> logits, int n);

// A sampling step's distribution: the tokens the sampler could draw and their probabilities
// (summing to 1), in the sampler's own deterministic order. Greedy: the argmax alone, with 1.
struct TokenDistribution {
  std::vector<int32_t> tokens;
  std::vector<double> probabilities;
  // The probability of `token` (0 when it cannot be drawn).
  double probability(int32_t token) const;
};

class Sampler {
 public:
  struct Sample {
    int32_t token;
    float logprob;  // of the model's own distribution (raw logits, before penalties and temperature)
  };

  Sampler(SamplingParams params, int64_t vocab_size);

  // The next token after `history`, which feeds the penalties only (see apply_penalties).
  int32_t sample(std::span<const float> logits, TokenHistory history);
  Sample sample_with_logprob(std::span<const float> logits, TokenHistory history);

  // What sample() draws from, after penalties, temperature and truncation: speculative decoding
  // compares the draft's and the target's distributions through this.
  void distribution(std::span<const float> logits, TokenHistory history, TokenDistribution& out);
  // A token drawn from `d` (or from max(0, d − minus), renormalised, when `minus` is given and
  // leaves any mass: the rejection sampling rule's residual), with this sampler's generator.
  int32_t draw(const TokenDistribution& d, const TokenDistribution* minus = nullptr);
  // A uniform number in [0, 1) from this sampler's generator.
  double uniform() { return uniform_01(); }

  const SamplingParams& params() const { return params_; }

 private:
  struct Candidate {
    int32_t token;
    float weight;  // exp((logit - max logit) / temperature): an unnormalised probability in (0, 1]
  };

  // The total order used wherever order matters: heavier first, then lower id.
  static bool more_likely(const Candidate& a, const Candidate& b);

  std::span<const float> penalized(std::span<const float> logits, TokenHistory history);
  bool draws_greedily() const;
  void compute_weights(std::span<const float> logits);
  void collect_candidates();
  size_t find_boundary_bucket(float threshold, double& total);
  void keep_nucleus(double wanted);
  int32_t draw();
  double uniform_01();

  SamplingParams params_;
  int64_t vocab_size_;
  std::mt19937_64 rng_;
  std::vector<float> adjusted_logits_;   // [vocab_size] after penalties or NaN removal; reused
  std::vector<float> weights_;           // [vocab_size] exp((logit - max) / temperature); reused
  std::vector<Candidate> candidates_;    // reused between steps
  std::vector<uint32_t> bucket_counts_;  // log-scale histogram of candidate weights
  std::vector<double> bucket_weights_;
};

}  // namespace retort
