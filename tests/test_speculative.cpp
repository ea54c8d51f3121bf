// Speculative decoding: the rejection rule keeps the target's distribution (checked by drawing),
// greedy output equals the target alone's, and a draft with another tokenizer is refused.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>
#include <random>

#include "engine/speculative.h"
#include "kernels/cpu/cpu_backend.h"
#include "model/model_loader.h"
#include "random_draft.h"
#include "test_support.h"
#include "util/error.h"

namespace retort {
namespace {

std::vector<float> random_logits(std::mt19937_64& rng, int64_t vocab, float spread) {
  std::vector<float> logits(static_cast<size_t>(vocab));
  for (float& logit : logits) logit = spread * (static_cast<float>(rng() >> 40) / static_cast<float>(1 << 24) - 0.5f);
  return logits;
}

// Draws the first token a round emits (the kept proposal, or the target's draw after a rejection)
// many times and compares its frequencies with the target's distribution p.
void expect_first_token_follows_target(SamplingParams params, uint64_t case_seed) {
  const int64_t vocab = 7;
  std::mt19937_64 rng(case_seed);
  const std::vector<float> target_row0 = random_logits(rng, vocab, 6.0f), target_row1 = random_logits(rng, vocab, 6.0f);
  // A draft that roughly agrees with the target, as a useful one does.
  std::vector<float> draft_row = random_logits(rng, vocab, 3.0f);
  for (int64_t i = 0; i < vocab; ++i) draft_row[static_cast<size_t>(i)] += target_row0[static_cast<size_t>(i)];
  std::vector<float> rows = target_row0;
  rows.insert(rows.end(), target_row1.begin(), target_row1.end());

  Sampler target(params, vocab);
  Sampler draft = make_draft_sampler(params, vocab);
  TokenDistribution p;
  target.distribution(target_row0, {}, p);
  const int trials = 200000;
  std::vector<double> counts(static_cast<size_t>(vocab), 0.0);
  int accepted = 0;
  for (int trial = 0; trial < trials; ++trial) {
    DraftProposal proposal;
    proposal.distributions.emplace_back();
    draft.distribution(draft_row, {}, proposal.distributions[0]);
    proposal.tokens.push_back(draft.draw(proposal.distributions[0]));
    const std::vector<int32_t> history{proposal.tokens[0]};
    const DraftVerdict verdict = verify_proposal(proposal, rows, vocab, target, history, 0);
    const int32_t first = verdict.accepted >= 1 ? proposal.tokens[0] : verdict.next;
    counts[static_cast<size_t>(first)] += 1;
    accepted += verdict.accepted;
  }
  for (int32_t token = 0; token < vocab; ++token) {
    const double expected = p.probability(token);
    const double seen = counts[static_cast<size_t>(token)] / trials;
    // Six standard errors of a frequency over 200,000 draws.
    const double tolerance = 6.0 * std::sqrt(std::max(expected * (1 - expected), 1e-6) / trials) + 1e-4;
    EXPECT_NEAR(seen, expected, tolerance) << "token " << token << ", case " << case_seed;
  }
  // Some proposals were kept and some rejected, so both branches of the rule were exercised.
  EXPECT_GT(accepted, 0);
  EXPECT_LT(accepted, trials);
}

TEST(SpeculativeRule, KeepsTheTargetsDistributionAtAnyTemperature) {
  SamplingParams plain;
  plain.temperature = 1.0f;
  plain.top_p = 1.0f;
  for (uint64_t seed : {1, 2, 3}) expect_first_token_follows_target(plain, seed);
  SamplingParams truncated;  // top-k leaves tokens only one side can draw
  truncated.temperature = 0.7f;
  truncated.top_p = 0.9f;
  truncated.top_k = 4;
  for (uint64_t seed : {4, 5}) expect_first_token_follows_target(truncated, seed);
}

TEST(SpeculativeRule, GreedyKeepsExactlyTheTargetsArgmaxes) {
  const int64_t vocab = 5;
  SamplingParams params;
  params.temperature = 0;
  Sampler target(params, vocab);
  // Row i's argmax: 3, 1, 4.
  const std::vector<float> rows = {0, 1, 2, 9, 0, /**/ 0, 9, 1, 2, 3, /**/ 1, 1, 1, 1, 9};
  auto one_hot = [](int32_t token) { return TokenDistribution{{token}, {1.0}}; };
  DraftProposal proposal{{3, 2}, {one_hot(3), one_hot(2)}};
  std::vector<int32_t> history{3, 2};
  DraftVerdict verdict = verify_proposal(proposal, rows, vocab, target, history, 0);
  EXPECT_EQ(verdict.accepted, 1);
  EXPECT_EQ(verdict.next, 1);  // the target's argmax where the draft said 2
  proposal = {{3, 1}, {one_hot(3), one_hot(1)}};
  history = {3, 1};
  verdict = verify_proposal(proposal, rows, vocab, target, history, 0);
  EXPECT_EQ(verdict.accepted, 2);
  EXPECT_EQ(verdict.next, 4);  // all kept: the bonus token from the last row
}

class SpeculativeGeneration : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = test::shared_path("fixtures/tiny-r1-qwen");
    RETORT_REQUIRE_PATH(dir_, "fixture tiny-r1-qwen");
    target_ = load_model(dir_, backend_);
    tokenizer_ = Tokenizer::load(dir_ + "/tokenizer.json");
    random_draft_ = std::make_unique<test::RandomDraft>(target_->config, backend_, 7);
    // A draft whose vocabulary is padded to another size than the target's (as R1-Distill-Qwen-1.5B's
    // 151,936 ids and the 7B's 152,064): its logits rows are not the target's length.
    ModelConfig wider = target_->config;
    wider.vocab_size += 16;
    padded_draft_ = std::make_unique<test::RandomDraft>(wider, backend_, 8);
  }

  struct Output {
    std::string text;
    GenerationStats stats;
  };
  Output run(const std::vector<int32_t>& prompt, GenerationOptions options, CachedSequence& sequence, KvCache& cache) {
    Output out;
    out.stats = generate(*target_->transformer, cache, sequence, *tokenizer_, prompt, options,
                         [&](std::string_view piece) { out.text += piece; });
    return out;
  }

  CpuBackend backend_;
  std::string dir_;
  std::unique_ptr<test::RandomDraft> random_draft_, padded_draft_;
  std::unique_ptr<LoadedModel> target_;
  std::unique_ptr<Tokenizer> tokenizer_;
};

TEST_F(SpeculativeGeneration, GreedyTextEqualsTheTargetAloneOverChatTurns) {
  GenerationOptions options;
  options.sampling.temperature = 0;
  options.max_tokens = 40;
  options.prefill_chunk = 7;
  const std::vector<int32_t> first = tokenizer_->encode("Hello there, how are", true);
  for (LoadedModel* draft : {target_.get(), random_draft_->model.get(), padded_draft_->model.get()}) {
    for (int k : {1, 3, 6}) {
      KvCache cache(target_->config, 256), alone_cache(target_->config, 256);
      CachedSequence sequence, alone;
      Drafter drafter(*draft->transformer, target_->config.vocab_size, 256, k, DType::F32, 5);
      GenerationOptions drafted = options;
      drafted.drafter = &drafter;
      Output a = run(first, options, alone, alone_cache);
      Output b = run(first, drafted, sequence, cache);
      EXPECT_EQ(b.text, a.text) << "k " << k;
      EXPECT_EQ(b.stats.generated_tokens, a.stats.generated_tokens);
      EXPECT_GT(b.stats.speculation.target_forwards, 0);
      if (draft == target_.get()) {
        EXPECT_EQ(b.stats.speculation.accepted, b.stats.speculation.proposed);
      }
      // A second turn after the reply: the cache keeps the shared prefix on both sides.
      std::vector<int32_t> second = alone.tokens;
      for (int32_t id : tokenizer_->encode(" and then", false)) second.push_back(id);
      Output a2 = run(second, options, alone, alone_cache);
      Output b2 = run(second, drafted, sequence, cache);
      EXPECT_EQ(b2.text, a2.text) << "k " << k;
      EXPECT_GT(b2.stats.reused_tokens, 0);
    }
  }
}

TEST_F(SpeculativeGeneration, SeededSamplingIsReproducibleAndStopsAtTheContext) {
  GenerationOptions options;
  options.sampling.temperature = 0.8f;
  options.sampling.seed = 11;
  options.max_tokens = 500;
  const std::vector<int32_t> prompt = tokenizer_->encode("Once upon", true);
  std::string texts[2];
  for (std::string& text : texts) {
    KvCache cache(target_->config, 64);
    CachedSequence sequence;
    Drafter drafter(*random_draft_->model->transformer, target_->config.vocab_size, 64, 4, DType::F32);
    options.drafter = &drafter;
    Output out = run(prompt, options, sequence, cache);
    text = out.text;
    // The context fills first unless an end-of-sequence token came before.
    EXPECT_TRUE(out.stats.context_full || out.stats.reason == StopReason::Eos);
    EXPECT_LE(sequence.kv.length, 64);
    EXPECT_EQ(static_cast<int64_t>(sequence.tokens.size()), sequence.kv.length);
  }
  EXPECT_EQ(texts[0], texts[1]);
}

TEST(SpeculativeDraft, ADraftWithAnotherTokenizerIsRefused) {
  const std::string qwen = test::shared_path("fixtures/tiny-r1-qwen");
  RETORT_REQUIRE_PATH(qwen, "fixture tiny-r1-qwen");
  auto target = Tokenizer::load(qwen + "/tokenizer.json");
  const ModelConfig config = load_hf_config(qwen + "/config.json");
  EXPECT_NO_THROW(check_draft_compatible(*target, *target, config, config));
  // The same tokenizer with two tokens' ids swapped: the same size, different ids.
  nlohmann::json json = nlohmann::json::parse(std::ifstream(qwen + "/tokenizer.json"));
  auto& vocab = json["model"]["vocab"];
  std::string first, second;
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    if (it.value() == 300) first = it.key();
    if (it.value() == 301) second = it.key();
  }
  vocab[first] = 301;
  vocab[second] = 300;
  const auto path = std::filesystem::temp_directory_path() / ("retort-swapped-" + std::to_string(::getpid()) + ".json");
  std::ofstream(path) << json.dump();
  auto draft = Tokenizer::load(path.string());
  std::filesystem::remove(path);
  try {
    check_draft_compatible(*target, *draft, config, config);
    FAIL() << "a draft with another tokenizer was accepted";
  } catch (const Error& error) {
    const std::string message = error.what();
    EXPECT_NE(message.find("token 300"), std::string::npos) << message;
    EXPECT_NE(message.find("share the target's tokenizer"), std::string::npos) << message;
  }
}

// A target whose vocabulary is padded further (R1-Distill-Qwen-7B's 152,064 ids against the 1.5B's
// 151,936): the extra ids are "[PAD<id>]" placeholders, as GGUF converters write them, so the pair is
// accepted; a real token past the draft's vocabulary is not.
TEST(SpeculativeDraft, AVocabularyPaddedFurtherIsTheSameTokenizerButARealExtraTokenIsNot) {
  const std::string qwen = test::shared_path("fixtures/tiny-r1-qwen");
  RETORT_REQUIRE_PATH(qwen, "fixture tiny-r1-qwen");
  auto draft = Tokenizer::load(qwen + "/tokenizer.json");
  ModelConfig config = load_hf_config(qwen + "/config.json");
  const int32_t size = draft->vocab_size();
  auto with_extra_ids = [&](const std::string& name, const std::vector<std::string>& texts) {
    nlohmann::json json = nlohmann::json::parse(std::ifstream(qwen + "/tokenizer.json"));
    for (size_t i = 0; i < texts.size(); ++i) json["model"]["vocab"][texts[i]] = size + int32_t(i);
    const auto path = std::filesystem::temp_directory_path() / ("retort-" + name + std::to_string(::getpid()) + ".json");
    std::ofstream(path) << json.dump();
    auto tokenizer = Tokenizer::load(path.string());
    std::filesystem::remove(path);
    return tokenizer;
  };
  auto padded = with_extra_ids("padded", {"[PAD" + std::to_string(size) + "]", "[PAD" + std::to_string(size + 1) + "]"});
  ASSERT_EQ(padded->vocab_size(), size + 2);
  ModelConfig padded_config = config;
  padded_config.vocab_size = std::max<int64_t>(config.vocab_size, size + 2);
  EXPECT_NO_THROW(check_draft_compatible(*padded, *draft, padded_config, config));
  EXPECT_NO_THROW(check_draft_compatible(*draft, *padded, config, padded_config));

  auto extended = with_extra_ids("extended", {"[PAD" + std::to_string(size) + "]", "Ġretort"});
  try {
    check_draft_compatible(*extended, *draft, padded_config, config);
    FAIL() << "a target with a real token past the draft's vocabulary was accepted";
  } catch (const Error& error) {
    const std::string message = error.what();
    EXPECT_NE(message.find(fmt::format("token {}", size + 1)), std::string::npos) << message;
    EXPECT_NE(message.find("not padding"), std::string::npos) << message;
  }
}

}  // namespace
}  // namespace retort
