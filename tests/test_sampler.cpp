#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <set>
#include <vector>

#include "engine/sampler.h"
#include "util/error.h"

namespace retort {
namespace {

std::vector<int32_t> draw_many(Sampler& sampler, const std::vector<float>& logits, int count) {
  std::vector<int32_t> tokens;
  for (int i = 0; i < count; ++i) tokens.push_back(sampler.sample(logits, {}));
  return tokens;
}

std::vector<double> softmax(const std::vector<float>& logits, double temperature) {
  double max_value = *std::max_element(logits.begin(), logits.end());
  std::vector<double> probabilities;
  for (float logit : logits) probabilities.push_back(std::exp((logit - max_value) / temperature));
  double sum = std::accumulate(probabilities.begin(), probabilities.end(), 0.0);
  for (double& probability : probabilities) probability /= sum;
  return probabilities;
}

// Pearson's chi-square statistic of observed token counts against expected probabilities.
double chi_square(const std::vector<int32_t>& tokens, const std::vector<double>& probabilities) {
  std::vector<double> counts(probabilities.size(), 0.0);
  for (int32_t token : tokens) counts[static_cast<size_t>(token)] += 1.0;
  double statistic = 0.0;
  for (size_t i = 0; i < probabilities.size(); ++i) {
    double expected = probabilities[i] * static_cast<double>(tokens.size());
    statistic += (counts[i] - expected) * (counts[i] - expected) / expected;
  }
  return statistic;
}

SamplingParams plain(float temperature, uint64_t seed = 1) {
  SamplingParams params;
  params.temperature = temperature;
  params.top_p = 1.0f;
  params.seed = seed;
  return params;
}

std::vector<float> random_logits(size_t vocab_size, uint32_t seed) {
  std::mt19937 generator(seed);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  std::vector<float> logits(vocab_size);
  for (float& logit : logits) logit = normal(generator);
  return logits;
}

// Logits whose softmax is exactly these probabilities (up to float rounding).
std::vector<float> logits_of(const std::vector<double>& probabilities) {
  std::vector<float> logits;
  for (double probability : probabilities) logits.push_back(static_cast<float>(std::log(probability)));
  return logits;
}

TEST(Sampler, GreedyPicksArgmaxAndLowestIdOnTies) {
  Sampler sampler(plain(0.0f), 5);
  EXPECT_EQ(sampler.sample(std::vector<float>{0.1f, 3.0f, -1.0f, 2.9f, 0.0f}, {}), 1);
  EXPECT_EQ(sampler.sample(std::vector<float>{1.0f, 4.0f, 4.0f, 2.0f, 4.0f}, {}), 1);
  EXPECT_EQ(argmax(std::vector<float>{NAN, -1.0f, NAN, 2.0f}), 3);
}

TEST(Sampler, TemperatureZeroIsGreedyWhateverTheSeed) {
  auto logits = random_logits(1000, 7);
  int32_t expected = argmax(logits);
  for (uint64_t seed : {0u, 1u, 99u}) {
    Sampler sampler(plain(0.0f, seed), 1000);
    EXPECT_EQ(draw_many(sampler, logits, 20), std::vector<int32_t>(20, expected));
  }
}

TEST(Sampler, SameSeedSameTokensDifferentSeedDifferentTokens) {
  std::vector<float> logits(50, 0.0f);  // uniform: every draw is pure randomness
  Sampler first(plain(1.0f, 42), 50), second(plain(1.0f, 42), 50), other(plain(1.0f, 43), 50);
  auto tokens = draw_many(first, logits, 200);
  EXPECT_EQ(tokens, draw_many(second, logits, 200));
  EXPECT_NE(tokens, draw_many(other, logits, 200));
}

TEST(Sampler, SeededSequenceIsStableAcrossPlatforms) {
  // mt19937_64's output is fixed by the standard: its 10000th value from the default seed is
  // 9981545732273789042, so seed 5489 must reproduce the same draws everywhere.
  std::mt19937_64 reference;
  reference.discard(9999);
  ASSERT_EQ(reference(), 9981545732273789042ull);
  std::vector<float> logits(4, 0.0f);
  Sampler sampler(plain(1.0f, 5489), 4);
  std::mt19937_64 bits(5489);
  for (int i = 0; i < 100; ++i) {
    double uniform = static_cast<double>(bits() >> 11) * 0x1.0p-53;
    EXPECT_EQ(sampler.sample(logits, {}), static_cast<int32_t>(uniform * 4));
  }
}

TEST(Sampler, MatchesSoftmaxAtTemperatureOne) {
  std::vector<float> logits = {1.0f, 0.5f, 0.0f, -0.5f, 2.0f, -1.0f, 0.3f, 1.5f};
  Sampler sampler(plain(1.0f, 2024), static_cast<int64_t>(logits.size()));
  // 7 degrees of freedom: P(chi² > 24.3) = 0.001; the seed is fixed, so this never flakes.
  EXPECT_LT(chi_square(draw_many(sampler, logits, 20000), softmax(logits, 1.0)), 24.3);
}

TEST(Sampler, TemperatureSharpensTheDistribution) {
  std::vector<float> logits = {1.0f, 0.5f, 0.0f, -0.5f, 0.8f};
  Sampler sampler(plain(0.5f, 11), static_cast<int64_t>(logits.size()));
  auto tokens = draw_many(sampler, logits, 20000);
  EXPECT_LT(chi_square(tokens, softmax(logits, 0.5)), 18.5);  // 4 dof, p = 0.001
  EXPECT_GT(chi_square(tokens, softmax(logits, 1.0)), 100.0);
}

TEST(Sampler, TopKOfOneIsGreedy) {
  for (uint32_t trial = 0; trial < 20; ++trial) {
    auto logits = random_logits(3000, trial);
    SamplingParams params = plain(1.5f, trial);
    params.top_k = 1;
    Sampler sampler(params, 3000);
    EXPECT_EQ(sampler.sample(logits, {}), argmax(logits));
  }
}

TEST(Sampler, TopKKeepsOnlyTheKBest) {
  std::vector<float> logits = {0.0f, 3.0f, 1.0f, 2.0f, 2.5f, -1.0f};
  SamplingParams params = plain(5.0f);  // hot, so pruned tokens would show up if kept
  params.top_k = 3;
  Sampler sampler(params, 6);
  std::set<int32_t> seen;
  for (int32_t token : draw_many(sampler, logits, 2000)) seen.insert(token);
  EXPECT_EQ(seen, (std::set<int32_t>{1, 3, 4}));
}

TEST(Sampler, SmallTopPKeepsOnlyTheTopToken) {
  auto logits = random_logits(5000, 3);
  SamplingParams params = plain(1.0f);
  params.top_p = 0.01f;
  Sampler sampler(params, 5000);
  EXPECT_EQ(draw_many(sampler, logits, 50), std::vector<int32_t>(50, argmax(logits)));
}

TEST(Sampler, TopPKeepsTheSmallestSetReachingP) {
  auto logits = logits_of({0.5, 0.3, 0.15, 0.05});
  SamplingParams params = plain(1.0f, 5);
  params.top_p = 0.7f;  // 0.5 < 0.7 <= 0.5 + 0.3
  Sampler sampler(params, 4);
  auto tokens = draw_many(sampler, logits, 8000);
  ASSERT_EQ(std::count_if(tokens.begin(), tokens.end(), [](int32_t token) { return token > 1; }), 0);
  EXPECT_LT(chi_square(tokens, {0.625, 0.375}), 10.8);  // renormalised 5:3; 1 dof, p = 0.001
}

TEST(Sampler, TopPOverALargeVocabularyStaysInTheNucleus) {
  const size_t vocab_size = 152064;  // Qwen2's
  auto logits = random_logits(vocab_size, 17);
  SamplingParams params = plain(0.6f, 9);
  params.top_p = 0.95f;
  Sampler sampler(params, static_cast<int64_t>(vocab_size));
  // The nucleus by brute force: full sort, cumulative softmax at temperature 0.6.
  auto probabilities = softmax(logits, 0.6);
  std::vector<int32_t> order(vocab_size);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return probabilities[a] > probabilities[b]; });
  std::set<int32_t> nucleus;
  double cumulative = 0.0;
  for (int32_t token : order) {
    nucleus.insert(token);
    cumulative += probabilities[token];
    if (cumulative >= 0.9501) break;  // a hair wide: the sampler sums float exps
  }
  ASSERT_GT(nucleus.size(), 64u);  // big enough that the growing partial sort has to grow
  for (int32_t token : draw_many(sampler, logits, 200)) EXPECT_TRUE(nucleus.count(token)) << token;
}

TEST(Sampler, TopKOverALargeVocabularyKeepsExactlyTheKBest) {
  const size_t vocab_size = 152064;
  auto logits = random_logits(vocab_size, 23);
  std::vector<int32_t> order(vocab_size);
  std::iota(order.begin(), order.end(), 0);
  std::partial_sort(order.begin(), order.begin() + 50, order.end(),
                    [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
  std::set<int32_t> best(order.begin(), order.begin() + 50);
  SamplingParams params = plain(3.0f, 4);  // hot: the 50 are close to uniform, so most show up
  params.top_k = 50;
  Sampler sampler(params, static_cast<int64_t>(vocab_size));
  std::set<int32_t> seen;
  for (int32_t token : draw_many(sampler, logits, 400)) seen.insert(token);
  EXPECT_TRUE(std::includes(best.begin(), best.end(), seen.begin(), seen.end()));
  EXPECT_GT(seen.size(), 40u);
}

TEST(Sampler, TopPIsTakenOverTheTopKSurvivors) {
  auto logits = logits_of({0.4, 0.3, 0.2, 0.1});
  SamplingParams params = plain(1.0f, 12);
  params.top_p = 0.5f;
  Sampler nucleus_only(params, 4);  // 0.4 < 0.5: tokens 0 and 1
  std::set<int32_t> seen;
  for (int32_t token : draw_many(nucleus_only, logits, 500)) seen.insert(token);
  EXPECT_EQ(seen, (std::set<int32_t>{0, 1}));
  params.top_k = 2;  // renormalised over {0, 1}, token 0 has 4/7 > 0.5 alone
  Sampler both(params, 4);
  EXPECT_EQ(draw_many(both, logits, 100), std::vector<int32_t>(100, 0));
}

TEST(Sampler, MinPPrunesRelativeToTheMostLikelyToken) {
  auto logits = logits_of({0.5, 0.3, 0.15, 0.05});
  SamplingParams params = plain(1.0f, 8);
  params.min_p = 0.2f;  // threshold 0.1: token 3 (0.05) goes, token 2 (0.15) stays
  Sampler sampler(params, 4);
  std::set<int32_t> seen;
  for (int32_t token : draw_many(sampler, logits, 4000)) seen.insert(token);
  EXPECT_EQ(seen, (std::set<int32_t>{0, 1, 2}));
}

TEST(Sampler, PenaltiesFollowHuggingFaceAndOpenAISemantics) {
  std::vector<float> logits = {2.0f, -2.0f, 1.0f, 0.5f};
  std::vector<int32_t> previous = {0, 1, 1, 3, 3, 3};
  SamplingParams params;
  params.repetition_penalty = 2.0f;
  params.frequency_penalty = 0.5f;
  params.presence_penalty = 1.0f;
  apply_penalties(logits, previous, params);
  EXPECT_FLOAT_EQ(logits[0], 2.0f / 2 - (1 * 0.5f + 1));   // positive: divided
  EXPECT_FLOAT_EQ(logits[1], -2.0f * 2 - (2 * 0.5f + 1));  // negative: multiplied
  EXPECT_FLOAT_EQ(logits[2], 1.0f);                        // never seen: untouched
  EXPECT_FLOAT_EQ(logits[3], 0.5f / 2 - (3 * 0.5f + 1));   // repetition applied once, not 3 times
}

// Repetition counts the prompt as Hugging Face does; frequency and presence count only what was
// generated, as OpenAI's API does.
TEST(Sampler, RepetitionCountsThePromptFrequencyAndPresenceOnlyTheOutput) {
  std::vector<float> logits = {2.0f, 2.0f, 2.0f};
  const std::vector<int32_t> tokens = {0, 0, 1, 1};  // prompt {0, 0}, generated {1, 1}
  SamplingParams params;
  params.repetition_penalty = 2.0f;
  params.frequency_penalty = 0.5f;
  params.presence_penalty = 0.25f;
  apply_penalties(logits, TokenHistory(tokens, 2), params);
  EXPECT_FLOAT_EQ(logits[0], 1.0f);                        // prompt only: repetition
  EXPECT_FLOAT_EQ(logits[1], 1.0f - (2 * 0.5f + 0.25f));   // generated: all three
  EXPECT_FLOAT_EQ(logits[2], 2.0f);
}

TEST(Sampler, PenaltiesChangeTheChoice) {
  std::vector<float> logits = {3.0f, 2.9f, 0.0f};
  std::vector<int32_t> previous = {0};
  SamplingParams params = plain(0.0f);
  params.repetition_penalty = 1.3f;
  Sampler sampler(params, 3);
  EXPECT_EQ(sampler.sample(logits, {}), 0);
  EXPECT_EQ(sampler.sample(logits, previous), 1);
  EXPECT_FLOAT_EQ(logits[0], 3.0f);  // the caller's logits are not modified
}

TEST(Sampler, RejectsBadInput) {
  SamplingParams params;
  params.top_p = 0.0f;
  EXPECT_THROW(Sampler(params, 10), Error);
  params = {};
  params.top_k = -1;
  EXPECT_THROW(Sampler(params, 10), Error);
  params = {};
  params.repetition_penalty = 0.0f;
  EXPECT_THROW(Sampler(params, 10), Error);
  EXPECT_THROW(Sampler(SamplingParams{}, 0), Error);

  Sampler sampler(SamplingParams{}, 4);
  std::vector<float> logits(4, 0.0f);
  EXPECT_THROW(sampler.sample(std::vector<float>(3, 0.0f), {}), Error);
  params = {};
  params.presence_penalty = 1.0f;
  Sampler penalised(params, 4);
  EXPECT_THROW(penalised.sample(logits, std::vector<int32_t>{4}), Error);
  EXPECT_THROW(penalised.sample(logits, std::vector<int32_t>{-1}), Error);
}

TEST(Sampler, IgnoresMaskedTokens) {
  const float masked = -std::numeric_limits<float>::infinity();
  std::vector<float> logits = {masked, 0.0f, masked, 0.0f};
  Sampler sampler(plain(1.0f, 3), 4);
  for (int32_t token : draw_many(sampler, logits, 500)) EXPECT_TRUE(token == 1 || token == 3);
  std::vector<float> broken = {NAN, 0.0f, NAN, 0.0f};  // a broken model's NaNs are never drawn
  for (int32_t token : draw_many(sampler, broken, 500)) EXPECT_TRUE(token == 1 || token == 3);
  EXPECT_THROW(sampler.sample(std::vector<float>(4, masked), {}), Error);
}

TEST(Sampler, TopLogprobsAreLogSoftmaxOfTheBest) {
  std::vector<float> logits = {0.5f, 2.0f, -1.0f, 2.0f, 1.0f};
  auto probabilities = softmax(logits, 1.0);
  auto best = top_logprobs(logits, 3);
  ASSERT_EQ(best.size(), 3u);
  EXPECT_EQ(best[0].first, 1);  // tie with token 3: lower id first
  EXPECT_EQ(best[1].first, 3);
  EXPECT_EQ(best[2].first, 4);
  for (const auto& [token, logprob] : best) EXPECT_NEAR(logprob, std::log(probabilities[token]), 1e-6);
  EXPECT_EQ(top_logprobs(logits, 10).size(), logits.size());
  EXPECT_TRUE(top_logprobs(logits, 0).empty());
}

TEST(Sampler, SampleWithLogprobReportsTheModelsLogprob) {
  auto logits = random_logits(100, 4);
  SamplingParams params = plain(0.7f, 6);
  params.top_k = 20;
  Sampler sampler(params, 100);
  auto probabilities = softmax(logits, 1.0);
  for (int i = 0; i < 20; ++i) {
    Sampler::Sample sample = sampler.sample_with_logprob(logits, {});
    EXPECT_NEAR(sample.logprob, std::log(probabilities[sample.token]), 1e-5);
  }
}

}  // namespace
}  // namespace retort
