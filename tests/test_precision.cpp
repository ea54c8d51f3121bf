// The precision report on a fixture model: the reference agrees with itself exactly, KL and top-1
// are stated independently from the models' own logits, and coarser types cost more.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "eval/precision.h"
#include "kernels/cpu/cpu_backend.h"
#include "model/model_loader.h"
#include "test_support.h"
#include "util/error.h"
#include "util/mapped_file.h"

namespace retort {
namespace {

namespace fs = std::filesystem;

std::vector<int32_t> fixture_text(const std::string& dir, size_t length) {
  const std::vector<int32_t> prompt = test::read_golden_fixture(dir).prompt;
  std::vector<int32_t> tokens;
  for (size_t i = 0; tokens.size() < length; ++i) tokens.push_back(prompt[(i * 7 + i / prompt.size()) % prompt.size()]);
  return tokens;
}

// KL(reference ‖ model) and top-1 agreement over one window's scored positions, from scratch.
std::pair<double, double> kl_and_agreement(Transformer& reference, Transformer& model, const std::vector<int32_t>& window) {
  auto logits_of = [&](Transformer& m) {
    KvCache cache(m.config(), static_cast<int64_t>(window.size()));
    KvSequence sequence;
    cache.reserve(sequence, static_cast<int64_t>(window.size()));
    SequenceChunk chunk{&sequence, window, LogitsWanted::All};
    std::vector<float> logits;
    m.forward({&chunk, 1}, cache, logits);
    return logits;
  };
  const auto a = logits_of(reference), b = logits_of(model);
  const int64_t vocab = reference.config().vocab_size, context = static_cast<int64_t>(window.size());
  double kl = 0, agree = 0, positions = 0;
  for (int64_t p = context / 2; p + 1 < context; ++p) {
    const float* x = a.data() + p * vocab;
    const float* y = b.data() + p * vocab;
    double zx = 0, zy = 0;
    for (int64_t v = 0; v < vocab; ++v) zx += std::exp(double(x[v])), zy += std::exp(double(y[v]));
    for (int64_t v = 0; v < vocab; ++v) {
      const double px = std::exp(double(x[v])) / zx, py = std::exp(double(y[v])) / zy;
      kl += px * std::log(px / py);
    }
    agree += (std::max_element(x, x + vocab) - x) == (std::max_element(y, y + vocab) - y) ? 1 : 0;
    ++positions;
  }
  return {kl / positions, agree / positions};
}

TEST(PrecisionReport, FixtureRowsAgreeWithAnIndependentRecomputation) {
  const std::string dir = test::shared_path("fixtures/tiny-r1-qwen");
  RETORT_REQUIRE_PATH(dir, "fixture tiny-r1-qwen");
  const fs::path work = fs::path(testing::TempDir()) / "precision-report";
  fs::remove_all(work);
  PrecisionOptions options;
  options.reference_path = dir;
  options.recipes = {QuantRecipe::Q8_0, QuantRecipe::Q4_0};
  options.work_dir = work.string();
  options.perplexity.context = 64;
  options.perplexity.max_chunks = 2;
  options.prompt_tokens = 16;
  options.decode_tokens = 4;
  const auto tokens = fixture_text(dir, 200);
  CpuBackend backend;
  const PrecisionReport report = measure_precision(options, tokens, backend);

  ASSERT_EQ(report.rows.size(), 3u);
  EXPECT_EQ(report.windows, 2);
  EXPECT_EQ(report.scored_positions, 2 * 31);
  EXPECT_DOUBLE_EQ(report.rows[0].mean_kl, 0.0);
  EXPECT_DOUBLE_EQ(report.rows[0].top1_agreement, 1.0);
  EXPECT_FALSE(fs::exists(work / "reference-logprobs.f32.tmp")) << "the scratch file is left behind";
  EXPECT_GT(report.rows[0].file_bytes, report.rows[1].file_bytes);
  EXPECT_GT(report.rows[1].file_bytes, report.rows[2].file_bytes);
  EXPECT_LT(report.rows[1].mean_kl, report.rows[2].mean_kl) << "q8_0 should lose less than q4_0";

  // The q8_0 row's KL and agreement, recomputed from the two models' logits on the first window
  // and the second, averaged (both windows score the same number of positions).
  auto reference = load_model(dir, backend);
  auto q8 = load_model(report.rows[1].path, backend);
  double kl = 0, agreement = 0;
  for (int w = 0; w < 2; ++w) {
    std::vector<int32_t> window(tokens.begin() + w * 64, tokens.begin() + (w + 1) * 64);
    auto [window_kl, window_agreement] = kl_and_agreement(*reference->transformer, *q8->transformer, window);
    kl += window_kl / 2;
    agreement += window_agreement / 2;
  }
  EXPECT_NEAR(report.rows[1].mean_kl, kl, 1e-6 + 1e-4 * kl);
  EXPECT_NEAR(report.rows[1].top1_agreement, agreement, 1e-12);

  const auto json = nlohmann::json::parse(precision_json(report));
  EXPECT_EQ(json["rows"].size(), 3u);
  EXPECT_EQ(json["rows"][1]["type"], "q8_0");
  EXPECT_NE(precision_markdown(report).find("| q4_0 |"), std::string::npos);
}

TEST(PrecisionReport, CliRejectsAnUnknownTypeBeforeDoingAnyWork) {
  const std::string dir = test::shared_path("fixtures/tiny-r1-qwen");
  RETORT_REQUIRE_PATH(dir, "fixture tiny-r1-qwen");
  const std::string work = (fs::path(testing::TempDir()) / "precision-bad-type").string();
  auto result = test::run_command(test::retort_binary() + " eval precision " + dir + " --file " + dir +
                                  "/config.json --types q8_0,q3_x --work-dir " + work + " 2>&1");
  EXPECT_NE(result.status, 0);
  EXPECT_NE(result.output.find("q3_x"), std::string::npos) << result.output;
  EXPECT_FALSE(fs::exists(work + "/model-q8_0.gguf"));
}

}  // namespace
}  // namespace retort
