// The KV cache's prefix cache: full blocks indexed by their tokens and everything before them,
// shared read-only and reference-counted, kept when their sequence ends, evicted least recently
// used (a sequence's tail first) when the pool needs them; and the scheduler with it on gives the
// same tokens as with it off, greedy and seeded, while skipping the shared prompt's prefill.
#include <gtest/gtest.h>

#include <array>

#include <numeric>

#include "engine/scheduler.h"
#include "kernels/cpu/cpu_backend.h"
#include "model/kv_cache.h"
#include "model/model_loader.h"
#include "test_support.h"

namespace retort {
namespace {

using namespace std::chrono_literals;

ModelConfig small_config() {
  ModelConfig config;
  config.num_layers = 2;
  config.num_kv_heads = 1;
  config.head_dim = 2;
  return config;
}

std::vector<int32_t> iota_tokens(int n, int32_t first = 100) {
  std::vector<int32_t> tokens(size_t(n), 0);
  std::iota(tokens.begin(), tokens.end(), first);
  return tokens;
}

// Reserves and "evaluates" (advances the length over) all of `tokens`, indexing its full blocks.
KvSequence evaluated(KvCache& cache, const std::vector<int32_t>& tokens) {
  KvSequence sequence;
  cache.attach_cached_prefix(sequence, tokens);
  EXPECT_TRUE(cache.reserve(sequence, int64_t(tokens.size())));
  sequence.length = int64_t(tokens.size());
  cache.index_full_blocks(sequence, tokens);
  return sequence;
}

TEST(PrefixCache, OffByDefaultAndThenNothingIsKept) {
  KvCache cache(small_config(), 64, 4);
  const auto tokens = iota_tokens(12);
  KvSequence first = evaluated(cache, tokens);
  cache.release(first);
  EXPECT_EQ(cache.cached_blocks(), 0);
  KvSequence second;
  EXPECT_EQ(cache.attach_cached_prefix(second, tokens), 0);
  EXPECT_EQ(cache.free_blocks(), cache.total_blocks());
}

TEST(PrefixCache, SharedBlocksAreTakenLeavingOneTokenToEvaluate) {
  KvCache cache(small_config(), 64, 4);  // 16 blocks of 4
  cache.set_prefix_caching(true);
  const auto tokens = iota_tokens(12);  // 3 full blocks
  KvSequence first = evaluated(cache, tokens);
  EXPECT_EQ(cache.free_blocks(), 13);

  // The same 12 tokens: two blocks shared (the third would leave nothing to evaluate).
  KvSequence same;
  EXPECT_EQ(cache.attach_cached_prefix(same, tokens), 8);
  EXPECT_EQ(same.blocks, std::vector<int32_t>(first.blocks.begin(), first.blocks.begin() + 2));
  // A longer prompt with the same start: all three.
  auto longer = tokens;
  longer.push_back(7);
  KvSequence extended;
  EXPECT_EQ(cache.attach_cached_prefix(extended, longer), 12);
  EXPECT_EQ(extended.blocks, first.blocks);
  EXPECT_EQ(cache.free_blocks(), 13) << "sharing takes no blocks";

  // Every holder releases; the blocks stay cached (and count as free) until the last one goes.
  cache.release(first);
  cache.release(same);
  EXPECT_EQ(cache.cached_blocks(), 0) << "extended still holds all three";
  cache.release(extended);
  EXPECT_EQ(cache.cached_blocks(), 3);
  EXPECT_EQ(cache.free_blocks(), 16);
}

TEST(PrefixCache, AMatchNeedsTheSameTokensInEveryEarlierBlock) {
  KvCache cache(small_config(), 64, 4);
  cache.set_prefix_caching(true);
  const auto tokens = iota_tokens(13);
  KvSequence first = evaluated(cache, tokens);
  cache.release(first);

  auto changed_first_block = tokens;
  changed_first_block[1] = 9999;
  KvSequence a;
  EXPECT_EQ(cache.attach_cached_prefix(a, changed_first_block), 0) << "block 2 follows another block 1";
  auto changed_third_block = tokens;
  changed_third_block[10] = 9999;
  KvSequence b;
  EXPECT_EQ(cache.attach_cached_prefix(b, changed_third_block), 8);
  // The same tokens one position later are other positions: no match.
  std::vector<int32_t> shifted{1};
  shifted.insert(shifted.end(), tokens.begin(), tokens.end());
  KvSequence c;
  EXPECT_EQ(cache.attach_cached_prefix(c, shifted), 0);
}

TEST(PrefixCache, EvictionTakesTheLeastRecentlyUsedTailFirstAndForgetsIt) {
  KvCache cache(small_config(), 16, 4);  // 4 blocks
  cache.set_prefix_caching(true);
  const auto tokens = iota_tokens(12);
  KvSequence first = evaluated(cache, tokens);  // blocks 0, 1, 2 (+ nothing: 12 positions)
  cache.release(first);
  EXPECT_EQ(cache.cached_blocks(), 3);
  // Two new blocks: the never-used one, then the cached tail (block 3 of the run, tokens 8..11).
  KvSequence other;
  ASSERT_TRUE(cache.reserve(other, 8));
  EXPECT_EQ(cache.cached_blocks(), 2);
  KvSequence again;
  EXPECT_EQ(cache.attach_cached_prefix(again, tokens), 8) << "the head survives the eviction";
  auto longer = tokens;
  longer.push_back(1);
  cache.release(again);
  KvSequence again_longer;
  EXPECT_EQ(cache.attach_cached_prefix(again_longer, longer), 8) << "the evicted tail is forgotten";
}

TEST(PrefixCache, ABlockWhoseTokensAreAlreadyCachedStaysPrivate) {
  KvCache cache(small_config(), 64, 4);
  cache.set_prefix_caching(true);
  const auto tokens = iota_tokens(8);
  KvSequence a = evaluated(cache, tokens);
  // b evaluated the same tokens itself (admitted before a's blocks were indexed).
  KvSequence b;
  ASSERT_TRUE(cache.reserve(b, 8));
  b.length = 8;
  cache.index_full_blocks(b, tokens);
  cache.release(b);
  EXPECT_EQ(cache.cached_blocks(), 0) << "b's copies are freed, not cached twice";
  cache.release(a);
  EXPECT_EQ(cache.cached_blocks(), 2);
}

class PrefixCacheScheduler : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = test::shared_path("fixtures/tiny-r1-qwen");
    RETORT_REQUIRE_PATH(dir_, "fixture tiny-r1-qwen");
    model_ = load_model(dir_, backend_);
    tokenizer_ = Tokenizer::load(dir_ + "/tokenizer.json");
    prompt_ = test::read_golden_fixture(dir_).prompt;
  }

  // Runs the requests one after another on a fresh scheduler; returns each one's text.
  std::vector<std::string> run(const std::vector<GenerationRequest>& requests, bool prefix_cache,
                               SchedulerStats* stats = nullptr) {
    KvCache cache(model_->config, 1024);
    SchedulerOptions options;
    options.prefix_cache = prefix_cache;
    options.max_batch_tokens = 24;  // prompts prefilled in chunks, cut elsewhere than the blocks
    Scheduler scheduler(*model_->transformer, cache, *tokenizer_, options);
    std::vector<std::string> texts;
    for (const GenerationRequest& request : requests) {
      auto result = scheduler.submit(request);
      EXPECT_EQ(result.status, SubmitStatus::Accepted);
      std::string text;
      for (int spins = 0; spins < 6000 && !result.stream->finished(); ++spins)
        for (auto& event : result.stream->wait_events(10ms)) text += event.content;
      for (auto& event : result.stream->wait_events(0ms)) text += event.content;
      texts.push_back(text);
    }
    if (stats) *stats = scheduler.stats();
    return texts;
  }

  CpuBackend backend_;
  std::string dir_;
  std::unique_ptr<LoadedModel> model_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::vector<int32_t> prompt_;
};

// A chat's turns: each prompt extends the one before, so each finds the earlier ones cached.
TEST_F(PrefixCacheScheduler, TheSameTokensWithAndWithoutHitsGreedyAndSeeded) {
  std::vector<GenerationRequest> requests;
  for (int turn = 0; turn < 3; ++turn) {
    GenerationRequest request;
    request.prompt.assign(prompt_.begin(), prompt_.begin() + std::ptrdiff_t(prompt_.size() - 16 + size_t(turn) * 8));
    request.max_tokens = 12;
    if (turn == 1) {
      request.sampling.temperature = 0.9f;
      request.sampling.seed = 77;
      request.sampling.frequency_penalty = 0.5f;
    } else {
      request.sampling.temperature = 0;
    }
    requests.push_back(request);
  }
  requests.push_back(requests[1]);  // the same seeded request again: its whole prompt but one token cached
  SchedulerStats with_stats, without_stats;
  const auto without = run(requests, false, &without_stats);
  const auto with = run(requests, true, &with_stats);
  EXPECT_EQ(with, without);
  for (const std::string& text : without) EXPECT_FALSE(text.empty());
  EXPECT_EQ(without_stats.prefix_cache_hit_tokens_total, 0);
  EXPECT_GT(with_stats.prefix_cache_hit_tokens_total, 0);
  EXPECT_LT(with_stats.prompt_tokens_total, without_stats.prompt_tokens_total) << "the hits were not prefilled";
  EXPECT_EQ(with_stats.prompt_tokens_total + with_stats.prefix_cache_hit_tokens_total,
            without_stats.prompt_tokens_total);
  std::printf("prompt tokens evaluated: %lld without the prefix cache, %lld with it (%lld of %lld found cached)\n",
              (long long)without_stats.prompt_tokens_total, (long long)with_stats.prompt_tokens_total,
              (long long)with_stats.prefix_cache_hit_tokens_total,
              (long long)with_stats.prefix_cache_query_tokens_total);
}

// Two requests with the same prompt submitted back to back (as when clients share a system prompt):
// the second waits while the first prefills (in chunks of 8 tokens, many steps) and then takes the
// blocks the first indexed, instead of computing the same prompt beside it. Both give the tokens they
// give alone.
TEST_F(PrefixCacheScheduler, ARequestWaitsForTheBlocksAnotherIsPrefillingInsteadOfComputingThemAgain) {
  GenerationRequest request;
  request.prompt = prompt_;
  request.max_tokens = 6;
  request.sampling.temperature = 0;
  ASSERT_GE(request.prompt.size(), size_t(33)) << "the fixture prompt is shorter than two blocks";
  const std::string alone = run({request}, false).front();

  KvCache cache(model_->config, 1024);
  SchedulerOptions options;
  options.prefix_cache = true;
  options.max_batch_tokens = 8;
  Scheduler scheduler(*model_->transformer, cache, *tokenizer_, options);
  auto first = scheduler.submit(request);
  auto second = scheduler.submit(request);
  ASSERT_EQ(first.status, SubmitStatus::Accepted);
  ASSERT_EQ(second.status, SubmitStatus::Accepted);
  std::string texts[2];
  const std::array streams{first.stream.get(), second.stream.get()};
  for (int i = 0; i < 2; ++i) {
    for (int spins = 0; spins < 6000 && !streams[i]->finished(); ++spins)
      for (auto& event : streams[i]->wait_events(10ms)) texts[i] += event.content;
    for (auto& event : streams[i]->wait_events(0ms)) texts[i] += event.content;
  }
  EXPECT_EQ(texts[0], alone);
  EXPECT_EQ(texts[1], alone);
  const SchedulerStats stats = scheduler.stats();
  const auto full_blocks = int64_t(request.prompt.size() - 1) / cache.block_size() * cache.block_size();
  EXPECT_EQ(stats.prefix_cache_hit_tokens_total, full_blocks) << "the second request computed the prompt again";
  EXPECT_EQ(stats.prompt_tokens_total, int64_t(request.prompt.size()) * 2 - full_blocks);
}

}  // namespace
}  // namespace retort
