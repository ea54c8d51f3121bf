// The continuous-batching scheduler on the golden tiny-r1-qwen fixture: batched sequences give the
// fixture's greedy continuation, KV blocks come back, cancellation, the bounded queue, preemption.
#include <gtest/gtest.h>


#include "engine/generation.h"
#include "engine/scheduler.h"
#include "kernels/cpu/cpu_backend.h"
#include "model/model_loader.h"
#include "scheduler_stream.h"
#include "test_support.h"
#include "util/error.h"
#include "util/mapped_file.h"

namespace retort {
namespace {

using namespace std::chrono_literals;
using test::Collected;
using test::collect;

class SchedulerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = test::shared_path("fixtures/tiny-r1-qwen");
    RETORT_REQUIRE_PATH(dir_, "fixture tiny-r1-qwen");
    model_ = load_model(dir_, backend_);
    tokenizer_ = Tokenizer::load(dir_ + "/tokenizer.json");
    const test::GoldenFixture golden = test::read_golden_fixture(dir_);
    prompt_ = golden.prompt;
    greedy_ = golden.greedy;
  }

  std::unique_ptr<Scheduler> make(int64_t kv_tokens, SchedulerOptions options = {}) {
    cache_ = std::make_unique<KvCache>(model_->config, kv_tokens);
    options.context = std::min<int64_t>(options.context, kv_tokens);
    return std::make_unique<Scheduler>(*model_->transformer, *cache_, *tokenizer_, options);
  }

  GenerationRequest greedy(std::vector<int32_t> prompt, int max_tokens) {
    GenerationRequest request;
    request.prompt = std::move(prompt);
    request.sampling.temperature = 0;
    request.max_tokens = max_tokens;
    return request;
  }

  // The fixture's greedy continuation as streamed text (bytes that never form a character become
  // U+FFFD), up to the first end-of-sequence token.
  std::string golden_text(size_t tokens) {
    auto eos = end_of_sequence_ids(*tokenizer_, model_->config);
    StreamingDecoder decoder(*tokenizer_);
    std::string text;
    for (size_t i = 0; i < tokens && i < greedy_.size(); ++i) {
      if (std::find(eos.begin(), eos.end(), greedy_[i]) != eos.end()) break;
      text += decoder.push(greedy_[i]);
    }
    return text + decoder.flush();
  }

  // The engine publishes its gauges after the step that finished the last request.
  static SchedulerStats idle_stats(Scheduler& scheduler) {
    for (int i = 0; i < 1000; ++i) {
      SchedulerStats stats = scheduler.stats();
      if (stats.running == 0 && stats.queued == 0 && stats.kv_blocks_used == 0) return stats;
      std::this_thread::sleep_for(2ms);
    }
    return scheduler.stats();
  }

  CpuBackend backend_;
  std::string dir_;
  std::unique_ptr<LoadedModel> model_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<KvCache> cache_;
  std::vector<int32_t> prompt_, greedy_;
};

TEST_F(SchedulerTest, BatchedSequencesGiveTheFixturesGreedyTokensAndReturnEveryBlock) {
  SchedulerOptions options;
  options.max_batch_tokens = 40;  // the 64-token prompts are prefilled in chunks beside decodes
  auto scheduler = make(1024, options);
  const int n = static_cast<int>(greedy_.size());
  std::vector<std::shared_ptr<RequestStream>> golden, others;
  for (int i = 0; i < 4; ++i) {
    auto result = scheduler->submit(greedy(prompt_, n));
    ASSERT_EQ(result.status, SubmitStatus::Accepted);
    golden.push_back(result.stream);
    // Different prompts in the same batch must not disturb the golden ones.
    std::vector<int32_t> other(prompt_.begin(), prompt_.begin() + 5 + 9 * i);
    others.push_back(scheduler->submit(greedy(other, 20 + i)).stream);
  }
  for (auto& stream : golden) {
    Collected got = collect(*stream);
    EXPECT_EQ(got.content, golden_text(greedy_.size()));
    EXPECT_NE(got.reason, FinishReason::Cancelled);
  }
  for (auto& stream : others) EXPECT_NE(collect(*stream).reason, FinishReason::Error);
  SchedulerStats stats = idle_stats(*scheduler);
  EXPECT_EQ(stats.running, 0);
  EXPECT_EQ(stats.queued, 0);
  EXPECT_EQ(stats.kv_blocks_used, 0);
  EXPECT_EQ(cache_->free_blocks(), cache_->total_blocks());
  EXPECT_GT(stats.generated_tokens_total, 4 * n);
}

// `retort run` (generate) and `retort serve` (the scheduler) sample through the same step: with a
// seed, a temperature and all three penalties, both give the same text for the same prompt.
TEST_F(SchedulerTest, SamplesTheTokensThatGenerateSamplesForTheSameSeed) {
  SamplingParams sampling;
  sampling.temperature = 0.8f;
  sampling.top_p = 0.9f;
  sampling.repetition_penalty = 1.2f;
  sampling.frequency_penalty = 0.4f;
  sampling.presence_penalty = 0.3f;
  sampling.seed = 1234;
  const int max_tokens = 24;

  GenerationOptions options;
  options.sampling = sampling;
  options.max_tokens = max_tokens;
  KvCache cache(model_->config, 256);
  CachedSequence sequence;
  std::string from_generate;
  generate(*model_->transformer, cache, sequence, *tokenizer_, prompt_, options,
           [&](std::string_view text) { from_generate += text; });

  auto scheduler = make(1024);
  GenerationRequest request;
  request.prompt = prompt_;
  request.sampling = sampling;
  request.max_tokens = max_tokens;
  auto result = scheduler->submit(std::move(request));
  ASSERT_EQ(result.status, SubmitStatus::Accepted);
  EXPECT_EQ(collect(*result.stream).content, from_generate);
  EXPECT_FALSE(from_generate.empty());
}

TEST_F(SchedulerTest, CancellingFreesTheSequenceAndItsBlocks) {
  auto scheduler = make(4096);
  auto stream = scheduler->submit(greedy(prompt_, 3000)).stream;
  ASSERT_FALSE(stream->wait_events(10s).empty());
  stream->cancel();
  Collected rest = collect(*stream);
  EXPECT_EQ(rest.reason, FinishReason::Cancelled);
  SchedulerStats stats = idle_stats(*scheduler);
  EXPECT_EQ(stats.kv_blocks_used, 0);
  EXPECT_EQ(stats.running, 0);
}

TEST_F(SchedulerTest, AFullQueueRefusesAndShutdownCancelsWhatIsLeft) {
  SchedulerOptions options;
  options.max_running = 1;
  options.max_queued = 1;
  auto scheduler = make(4096, options);
  auto running = scheduler->submit(greedy(prompt_, 4000)).stream;
  ASSERT_FALSE(running->wait_events(10s).empty());  // admitted and decoding
  auto queued = scheduler->submit(greedy(prompt_, 4000));
  EXPECT_EQ(queued.status, SubmitStatus::Accepted);
  EXPECT_EQ(scheduler->submit(greedy(prompt_, 10)).status, SubmitStatus::QueueFull);
  scheduler->shutdown(0ms);
  EXPECT_EQ(collect(*running).reason, FinishReason::Cancelled);
  EXPECT_EQ(collect(*queued.stream).reason, FinishReason::Cancelled);
  EXPECT_EQ(scheduler->submit(greedy(prompt_, 10)).status, SubmitStatus::ShuttingDown);
}

TEST_F(SchedulerTest, PreemptedSequencesResumeAndGiveTheSameTokensAsAlone) {
  // 4 blocks of 16 positions for 3 sequences that each grow to 45: decoding must preempt.
  SchedulerOptions options;
  options.context = 64;
  auto scheduler = make(64, options);
  std::vector<std::vector<int32_t>> prompts = {{prompt_.begin(), prompt_.begin() + 5},
                                               {prompt_.begin() + 7, prompt_.begin() + 12},
                                               {prompt_.begin() + 20, prompt_.begin() + 24}};
  std::vector<std::string> alone;
  for (const auto& p : prompts) alone.push_back(collect(*scheduler->submit(greedy(p, 40)).stream).content);
  EXPECT_EQ(scheduler->stats().preemptions_total, 0);
  std::vector<std::shared_ptr<RequestStream>> together;
  for (const auto& p : prompts) together.push_back(scheduler->submit(greedy(p, 40)).stream);
  for (size_t i = 0; i < prompts.size(); ++i) EXPECT_EQ(collect(*together[i]).content, alone[i]) << "prompt " << i;
  EXPECT_GT(scheduler->stats().preemptions_total, 0);
  EXPECT_EQ(idle_stats(*scheduler).kv_blocks_used, 0);
}

TEST_F(SchedulerTest, RefusesPromptsOverTheContextWithTheNumbers) {
  SchedulerOptions options;
  options.context = 100;
  auto scheduler = make(4096, options);
  try {
    scheduler->submit(greedy(prompt_, 50));
    FAIL() << "expected an error";
  } catch (const Error& error) {
    EXPECT_EQ(error.kind(), ErrorKind::OutOfRange);
    EXPECT_NE(std::string(error.what()).find("100"), std::string::npos) << error.what();
    EXPECT_NE(std::string(error.what()).find("114"), std::string::npos) << error.what();
  }
  EXPECT_THROW(scheduler->submit(greedy({}, 5)), Error);
  EXPECT_THROW(scheduler->submit(greedy({1, 2, 100000}, 5)), Error);
}

TEST_F(SchedulerTest, DeadlinesEndGenerationAndStopStringsAreHonoured) {
  auto scheduler = make(4096);
  auto late = greedy(prompt_, 3000);
  late.deadline = std::chrono::steady_clock::now();
  EXPECT_EQ(collect(*scheduler->submit(std::move(late)).stream).reason, FinishReason::Timeout);

  const std::string full = golden_text(greedy_.size());
  const std::string stop = "wj";  // ASCII text early in the fixture's greedy continuation
  ASSERT_NE(full.find(stop), std::string::npos);
  auto stopped = greedy(prompt_, static_cast<int>(greedy_.size()));
  stopped.stop_strings = {stop};
  Collected got = collect(*scheduler->submit(std::move(stopped)).stream);
  EXPECT_EQ(got.reason, FinishReason::Stop);
  EXPECT_EQ(got.content, full.substr(0, full.find(stop)));
}

TEST_F(SchedulerTest, ReasoningIsSplitWhenThePromptOpensIt) {
  auto scheduler = make(4096);
  auto request = greedy(prompt_, static_cast<int>(greedy_.size()));
  request.split_reasoning = true;
  request.starts_in_reasoning = true;
  Collected got = collect(*scheduler->submit(std::move(request)).stream);
  // The fixture's continuation holds no </think>, so all of it is reasoning.
  EXPECT_EQ(got.reasoning, golden_text(greedy_.size()));
  EXPECT_EQ(got.content, "");
}

}  // namespace
}  // namespace retort
