// The scheduler with a draft model: many sequences verified in one batched target forward give the
// same greedy text as without a draft, seeded sampling is reproducible, the counters add up, and
// the KV blocks of both caches come back.
#include <gtest/gtest.h>

#include <filesystem>

#include "engine/generation.h"
#include "engine/scheduler.h"
#include "engine/speculative.h"
#include "kernels/cpu/cpu_backend.h"
#include "model/model_loader.h"
#include "random_draft.h"
#include "scheduler_stream.h"
#include "test_support.h"

namespace retort {
namespace {

using namespace std::chrono_literals;

using Reply = test::Collected;

class SchedulerSpeculation : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = test::shared_path("fixtures/tiny-r1-qwen");
    RETORT_REQUIRE_PATH(dir_, "fixture tiny-r1-qwen");
    target_ = load_model(dir_, backend_);
    tokenizer_ = Tokenizer::load(dir_ + "/tokenizer.json");
    random_draft_ = std::make_unique<test::RandomDraft>(target_->config, backend_, 5);
    ModelConfig wider = target_->config;  // a draft whose vocabulary is padded to another size
    wider.vocab_size += 16;
    padded_draft_ = std::make_unique<test::RandomDraft>(wider, backend_, 6);
  }

  // Every prompt's reply, all submitted at once to one scheduler (with `drafter` when given).
  std::vector<Reply> serve(const std::vector<GenerationRequest>& requests, Drafter* drafter, SchedulerStats* stats) {
    KvCache cache(target_->config, 512);
    SchedulerOptions options;
    options.context = 512;
    options.max_running = 4;
    options.prefix_cache = true;
    options.drafter = drafter;
    Scheduler scheduler(*target_->transformer, cache, *tokenizer_, options);
    std::vector<std::shared_ptr<RequestStream>> streams;
    for (const auto& request : requests) streams.push_back(scheduler.submit(request).stream);
    std::vector<Reply> replies;
    for (auto& stream : streams) replies.push_back(test::collect(*stream));
    for (int i = 0; i < 500 && scheduler.stats().kv_blocks_used > 0; ++i) std::this_thread::sleep_for(2ms);
    if (stats != nullptr) *stats = scheduler.stats();
    EXPECT_EQ(scheduler.stats().kv_blocks_used, 0);
    scheduler.shutdown(0ms);
    return replies;
  }

  std::vector<GenerationRequest> requests(float temperature) {
    std::vector<GenerationRequest> out;
    const char* prompts[] = {"Hello there", "Once upon a time", "The bank said", "Hello there", "1 2 3 4"};
    for (int i = 0; i < 5; ++i) {
      GenerationRequest request;
      request.prompt = tokenizer_->encode(prompts[i], true);
      request.sampling.temperature = temperature;
      request.sampling.seed = 100 + static_cast<uint64_t>(i);
      request.max_tokens = 20 + 7 * i;
      request.top_logprobs = i == 2 ? 2 : -1;
      out.push_back(std::move(request));
    }
    return out;
  }

  CpuBackend backend_;
  std::string dir_;
  std::unique_ptr<test::RandomDraft> random_draft_, padded_draft_;
  std::unique_ptr<LoadedModel> target_;
  std::unique_ptr<Tokenizer> tokenizer_;
};

TEST_F(SchedulerSpeculation, GreedyRepliesEqualTheTargetsAloneAndCountersAddUp) {
  const auto alone = serve(requests(0), nullptr, nullptr);
  for (LoadedModel* draft : {target_.get(), random_draft_->model.get(), padded_draft_->model.get()}) {
    Drafter drafter(*draft->transformer, target_->config.vocab_size, 512, 4, DType::F32);
    SchedulerStats stats;
    const auto drafted = serve(requests(0), &drafter, &stats);
    ASSERT_EQ(drafted.size(), alone.size());
    for (size_t i = 0; i < alone.size(); ++i) {
      EXPECT_EQ(drafted[i].content + drafted[i].reasoning, alone[i].content + alone[i].reasoning) << "request " << i;
      EXPECT_EQ(drafted[i].generated, alone[i].generated) << "request " << i;
      EXPECT_EQ(drafted[i].reason, alone[i].reason) << "request " << i;
    }
    const SpeculationStats& s = stats.speculation;
    EXPECT_GT(s.target_forwards, 0);
    EXPECT_EQ(s.emitted, s.accepted + s.target_forwards);
    EXPECT_LE(s.accepted, s.proposed);
    if (draft == target_.get()) {
      EXPECT_EQ(s.accepted, s.proposed);  // a draft that is the target is always right
      EXPECT_GT(s.tokens_per_forward(), 2.0);
    }
    EXPECT_EQ(drafter.cache().free_blocks(), drafter.cache().total_blocks());  // draft blocks came back
  }
}

TEST_F(SchedulerSpeculation, SeededSamplingWithADraftIsReproducible) {
  Drafter drafter(*random_draft_->model->transformer, target_->config.vocab_size, 512, 3, DType::F32);
  const auto first = serve(requests(0.9f), &drafter, nullptr);
  const auto second = serve(requests(0.9f), &drafter, nullptr);
  for (size_t i = 0; i < first.size(); ++i) {
    EXPECT_EQ(first[i].content + first[i].reasoning, second[i].content + second[i].reasoning) << "request " << i;
    EXPECT_GT(first[i].generated, 0);
  }
}

}  // namespace
}  // namespace retort
