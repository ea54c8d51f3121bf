// retort eval classify: the CSV reader (quotes, errors with line numbers) and candidate scoring —
// the batched scores (each candidate continuing from a copy of the cached prompt, in one forward or
// in several groups when the cache is small) equal those of evaluating prompt + candidate from
// scratch on the tiny-r1-qwen fixture.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "eval/classify.h"
#include "kernels/cpu/cpu_backend.h"
#include "model/model_loader.h"
#include "tokenizer/tokenizer.h"
#include "test_support.h"
#include "util/error.h"

namespace retort {
namespace {

namespace fs = std::filesystem;

TEST(DistillClassifyCsv, ReadsQuotedFieldsAndNamesBadLines) {
  const fs::path path = fs::temp_directory_path() / "retort-classify.csv";
  std::ofstream(path) << "text,category\n\"Hi, \"\"there\"\"\nfriend\",card_arrival\nplain,top_up\r\n\n";
  const auto rows = read_labelled_csv(path.string(), "text", "category");
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].text, "Hi, \"there\"\nfriend");
  EXPECT_EQ(rows[1].label, "top_up");
  EXPECT_THROW(read_labelled_csv(path.string(), "text", "label"), Error);
  std::ofstream(path) << "text,category\na,b\nc,d,e\n";
  try {
    read_labelled_csv(path.string(), "text", "category");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(":3:"), std::string::npos) << e.what();
  }
  fs::remove(path);
}

// log p(candidate | prompt) by evaluating prompt + candidate as one sequence from scratch, with a
// plain double log-softmax: the single-sequence reference for the batched scores.
std::vector<double> from_scratch_scores(Transformer& t, KvCache& cache, const std::vector<int32_t>& prompt,
                                        const std::vector<std::vector<int32_t>>& candidates) {
  const int64_t V = t.config().vocab_size;
  std::vector<double> scores;
  for (const auto& candidate : candidates) {
    std::vector<int32_t> all = prompt;
    all.insert(all.end(), candidate.begin(), candidate.end());
    KvSequence seq;
    EXPECT_TRUE(cache.reserve(seq, int64_t(all.size())));
    SequenceChunk chunk{&seq, all, LogitsWanted::All};
    std::vector<float> logits;
    t.forward({&chunk, 1}, cache, logits);
    double want = 0;
    for (size_t i = 0; i < candidate.size(); ++i) {
      const float* row = logits.data() + (prompt.size() - 1 + i) * size_t(V);
      double max = row[0], sum = 0;
      for (int64_t v = 1; v < V; ++v) max = std::max(max, double(row[v]));
      for (int64_t v = 0; v < V; ++v) sum += std::exp(double(row[v]) - max);
      want += double(row[candidate[i]]) - max - std::log(sum);
    }
    cache.release(seq);
    scores.push_back(want);
  }
  return scores;
}

class DistillClassifyScores : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = test::shared_path("fixtures/tiny-r1-qwen");
    RETORT_REQUIRE_PATH(dir_, "the tiny-r1-qwen fixture");
    model_ = load_model(dir_, backend_);
  }
  void expect_near_all(const std::vector<double>& scores, const std::vector<double>& want) {
    ASSERT_EQ(scores.size(), want.size());
    for (size_t c = 0; c < want.size(); ++c) EXPECT_NEAR(scores[c], want[c], 1e-4 * std::abs(want[c])) << "candidate " << c;
  }
  std::string dir_;
  CpuBackend backend_;
  std::unique_ptr<LoadedModel> model_;
  // One token, and 2 to 7 tokens, some sharing a first token or a prefix.
  const std::vector<int32_t> prompt_{5, 77, 301, 12, 9};
  const std::vector<std::vector<int32_t>> candidates_{
      {40}, {41, 200, 511}, {300, 3, 3, 3, 511}, {41, 201, 511}, {7, 511}, {41, 200, 60, 61, 62, 63, 511}, {8}};
};

TEST_F(DistillClassifyScores, BatchedCandidatesEqualFromScratchLikelihoods) {
  KvCache cache(model_->config, 256);
  const std::vector<double> scores = score_candidates(*model_->transformer, cache, prompt_, candidates_);
  EXPECT_EQ(cache.free_blocks(), cache.total_blocks()) << "every sequence's blocks are given back";
  expect_near_all(scores, from_scratch_scores(*model_->transformer, cache, prompt_, candidates_));
}

TEST_F(DistillClassifyScores, ASmallCacheScoresTheCandidatesInSeveralGroups) {
  // Blocks of 4: the prompt takes 2 and the five multi-token candidates (prompt + all but their last
  // token) 2, 3, 2, 2 and 3, so with 6 blocks they go in four groups of at most two.
  KvCache cache(model_->config, 24, 4);
  CandidateScratch scratch;
  const std::vector<double> scores = score_candidates(*model_->transformer, cache, prompt_, candidates_, scratch);
  EXPECT_EQ(cache.free_blocks(), cache.total_blocks());
  KvCache roomy(model_->config, 256);
  expect_near_all(scores, from_scratch_scores(*model_->transformer, roomy, prompt_, candidates_));
  // The scratch is reused for another prompt.
  const std::vector<int32_t> other_prompt{9, 8, 7, 6, 5, 4, 3};
  expect_near_all(score_candidates(*model_->transformer, cache, other_prompt, candidates_, scratch),
                  from_scratch_scores(*model_->transformer, roomy, other_prompt, candidates_));
}

TEST_F(DistillClassifyScores, ACacheTooSmallForOneCandidateIsAnErrorAndGivesBlocksBack) {
  KvCache cache(model_->config, 16, 4);  // the prompt takes 2 blocks, a 5-token candidate needs 3
  EXPECT_THROW(score_candidates(*model_->transformer, cache, prompt_, candidates_), Error);
  EXPECT_EQ(cache.free_blocks(), cache.total_blocks());
}

TEST_F(DistillClassifyScores, CacheSizedForOneGroupHoldsTheLongestPromptAndACopyPerCandidate) {
  auto tokenizer = Tokenizer::load(dir_ + "/tokenizer.json");
  const std::vector<std::string> labels{"card_arrival", "top_up_failed", "x", "exchange_rate"};
  const std::vector<LabelledText> examples{{"short", "x"}, {"a somewhat longer query about my card", "x"}};
  const auto candidates = candidate_tokens(*tokenizer, labels);
  const auto prompt = classify_prompt(*tokenizer, examples[1].text);
  for (const int64_t block : {4, 16}) {
    const int64_t tokens = classify_cache_tokens(*tokenizer, labels, examples, block);
    ASSERT_EQ(tokens % block, 0);
    // Exactly enough blocks: every candidate's sequence fits next to the prompt's, and one block less does not.
    for (const int64_t spare : {0, -1}) {
      KvCache cache(model_->config, tokens + spare * block, block);
      std::vector<KvSequence> sequences(candidates.size() + 1);
      bool all_fit = cache.reserve(sequences[0], int64_t(prompt.size()));
      for (size_t c = 0; c < candidates.size(); ++c)
        if (candidates[c].size() > 1)
          all_fit = all_fit && cache.reserve(sequences[c + 1], int64_t(prompt.size() + candidates[c].size()) - 1);
      EXPECT_EQ(all_fit, spare == 0) << "blocks of " << block;
    }
  }
  KvCache cache(model_->config, classify_cache_tokens(*tokenizer, labels, examples, 16), 16);
  KvCache roomy(model_->config, 4096);
  expect_near_all(score_candidates(*model_->transformer, cache, prompt, candidates),
                  from_scratch_scores(*model_->transformer, roomy, prompt, candidates));
}

}  // namespace
}  // namespace retort
