// retort eval classify: the CSV reader (quotes, errors with line numbers) and candidate scoring —
// the cached-prompt scores equal those of evaluating prompt + candidate from scratch on the
// tiny-r1-qwen fixture, so the cache rollback between candidates is exact.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "eval/classify.h"
#include "kernels/cpu/cpu_backend.h"
#include "model/model_loader.h"
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

TEST(DistillClassifyScores, CachedCandidatesEqualFromScratchLikelihoods) {
  const std::string dir = test::shared_path("fixtures/tiny-r1-qwen");
  RETORT_REQUIRE_PATH(dir, "the tiny-r1-qwen fixture");
  CpuBackend backend;
  auto model = load_model(dir, backend);
  Transformer& t = *model->transformer;
  KvCache cache(model->config, 256);
  const int64_t V = model->config.vocab_size;
  const std::vector<int32_t> prompt{5, 77, 301, 12, 9};
  const std::vector<std::vector<int32_t>> candidates{{40}, {41, 200, 511}, {300, 3, 3, 3, 511}, {41, 201, 511}};
  const std::vector<double> scores = score_candidates(t, cache, prompt, candidates);
  ASSERT_EQ(scores.size(), candidates.size());
  EXPECT_EQ(cache.free_blocks(), cache.total_blocks()) << "the sequence's blocks are given back";
  for (size_t c = 0; c < candidates.size(); ++c) {
    std::vector<int32_t> all = prompt;
    all.insert(all.end(), candidates[c].begin(), candidates[c].end());
    KvSequence seq;
    ASSERT_TRUE(cache.reserve(seq, int64_t(all.size())));
    SequenceChunk chunk{&seq, all, LogitsWanted::All};
    std::vector<float> logits;
    t.forward({&chunk, 1}, cache, logits);
    double want = 0;
    for (size_t i = 0; i < candidates[c].size(); ++i) {
      const float* row = logits.data() + (prompt.size() - 1 + i) * size_t(V);
      double max = row[0], sum = 0;
      for (int64_t v = 1; v < V; ++v) max = std::max(max, double(row[v]));
      for (int64_t v = 0; v < V; ++v) sum += std::exp(double(row[v]) - max);
      want += double(row[candidates[c][i]]) - max - std::log(sum);
    }
    cache.release(seq);
    EXPECT_NEAR(scores[c], want, 1e-4 * std::abs(want)) << "candidate " << c;
  }
}

}  // namespace
}  // namespace retort
