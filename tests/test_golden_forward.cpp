// The forward pass against the golden fixtures (../shared/fixtures/tiny-r1-*): logits at every
// prompt position and the greedy continuation computed by an independent engine. Three ways of
// feeding the prompt (one batch, token by token, chunked prefill) and every instruction set must
// match within the fixture README's tolerance: max |Δlogit| ≤ 1e-3 × logits_std, whether the
// weights come from the HF directory or from llama.cpp's GGUF of the same model.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>

#include "kernels/cpu/cpu_backend.h"
#include "model/model_loader.h"
#include "test_support.h"
#include "util/mapped_file.h"

namespace retort {
namespace {

using Fixture = test::GoldenFixture;

int32_t argmax(const float* row, int64_t n) {
  return static_cast<int32_t>(std::max_element(row, row + n) - row);
}

struct GoldenCase {
  std::string fixture;
  const cpu::IsaKernels* isa;
  bool from_gguf;  // model.f32.gguf (written by llama.cpp) instead of the HF directory
};

class GoldenForward : public ::testing::TestWithParam<GoldenCase> {
 protected:
  void SetUp() override {
    dir_ = test::shared_path("fixtures/" + GetParam().fixture);
    RETORT_REQUIRE_PATH(dir_, "fixture " + GetParam().fixture);
    backend_ = std::make_unique<CpuBackend>(*GetParam().isa);
    model_ = load_model(GetParam().from_gguf ? dir_ + "/model.f32.gguf" : dir_, *backend_);
    fixture_ = test::read_golden_fixture(dir_);
    vocab_ = model_->config.vocab_size;
    tolerance_ = 1e-3 * fixture_.logits_std;
  }

  // Feeds the prompt in chunks of `chunk` tokens, collecting every position's logits.
  std::vector<float> prompt_logits(KvCache& cache, KvSequence& seq, size_t chunk) {
    std::vector<float> all, rows;
    for (size_t begin = 0; begin < fixture_.prompt.size(); begin += chunk) {
      size_t n = std::min(chunk, fixture_.prompt.size() - begin);
      EXPECT_TRUE(cache.reserve(seq, seq.length + static_cast<int64_t>(n)));
      SequenceChunk batch{&seq, std::span(fixture_.prompt).subspan(begin, n), LogitsWanted::All};
      model_->transformer->forward({&batch, 1}, cache, rows);
      all.insert(all.end(), rows.begin(), rows.end());
    }
    return all;
  }

  void expect_logits_match(const std::vector<float>& got, const std::string& mode) {
    ASSERT_EQ(got.size(), fixture_.logits.size()) << mode;
    double worst = 0;
    for (size_t i = 0; i < got.size(); ++i) worst = std::max(worst, double(std::fabs(got[i] - fixture_.logits[i])));
    EXPECT_LE(worst, tolerance_) << mode << ": max |Δlogit| " << worst << " over tolerance " << tolerance_;
  }

  std::vector<int32_t> greedy_after_prompt(KvCache& cache, KvSequence& seq, const std::vector<float>& logits) {
    std::vector<int32_t> generated{argmax(logits.data() + (fixture_.prompt.size() - 1) * vocab_, vocab_)};
    std::vector<float> row;
    while (generated.size() < fixture_.greedy.size()) {
      EXPECT_TRUE(cache.reserve(seq, seq.length + 1));
      SequenceChunk step{&seq, std::span(&generated.back(), 1), LogitsWanted::Last};
      model_->transformer->forward({&step, 1}, cache, row);
      generated.push_back(argmax(row.data(), vocab_));
    }
    return generated;
  }

  std::string dir_;
  std::unique_ptr<CpuBackend> backend_;
  std::unique_ptr<LoadedModel> model_;
  Fixture fixture_;
  int64_t vocab_ = 0;
  double tolerance_ = 0;
};

TEST_P(GoldenForward, WholePromptInOneBatchThenGreedy) {
  KvCache cache(model_->config, 256);
  KvSequence seq;
  auto logits = prompt_logits(cache, seq, fixture_.prompt.size());
  expect_logits_match(logits, "one batch");
  EXPECT_EQ(greedy_after_prompt(cache, seq, logits), fixture_.greedy);
}

TEST_P(GoldenForward, TokenByToken) {
  KvCache cache(model_->config, 256, 8);
  KvSequence seq;
  auto logits = prompt_logits(cache, seq, 1);
  expect_logits_match(logits, "token by token");
  EXPECT_EQ(greedy_after_prompt(cache, seq, logits), fixture_.greedy);
}

TEST_P(GoldenForward, ChunkedPrefill) {
  KvCache cache(model_->config, 256, 16);
  KvSequence seq;
  expect_logits_match(prompt_logits(cache, seq, 7), "chunks of 7");
  KvSequence seq2;
  cache.release(seq);
  expect_logits_match(prompt_logits(cache, seq2, 20), "chunks of 20");
}

// Two sequences in one batch, one prefilling while the other decodes, give the same logits as
// each alone: the batch shares nothing but the weights.
TEST_P(GoldenForward, MixedBatchMatchesSoloRuns) {
  KvCache cache(model_->config, 512, 16);
  KvSequence a, b;
  const auto& prompt = fixture_.prompt;
  ASSERT_TRUE(cache.reserve(b, 10));
  std::vector<float> rows;
  SequenceChunk warm{&b, std::span(prompt).first(10), LogitsWanted::None};
  model_->transformer->forward({&warm, 1}, cache, rows);

  ASSERT_TRUE(cache.reserve(a, static_cast<int64_t>(prompt.size())));
  ASSERT_TRUE(cache.reserve(b, 11));
  SequenceChunk batch[2] = {{&a, std::span(prompt), LogitsWanted::All},
                            {&b, std::span(prompt).subspan(10, 1), LogitsWanted::Last}};
  EXPECT_EQ(model_->transformer->forward(batch, cache, rows), static_cast<int64_t>(prompt.size()) + 1);
  std::vector<float> a_rows(rows.begin(), rows.begin() + prompt.size() * vocab_);
  expect_logits_match(a_rows, "batched prefill");
  double worst = 0;
  for (int64_t v = 0; v < vocab_; ++v)
    worst = std::max(worst, double(std::fabs(rows[prompt.size() * vocab_ + v] - fixture_.logits[10 * vocab_ + v])));
  EXPECT_LE(worst, tolerance_) << "decode row in a mixed batch";
}

// An f16 KV cache is judged like quantized weights (the fixture README's rule for reduced-precision
// paths): mean KL divergence from the fixture's distributions and top-1 agreement over every
// prompt position, and the greedy continuation. Printed for docs/performance.md.
// Mean KL divergence of `logits` from the fixture's distributions and top-1 agreement over every
// prompt position, printed for docs/performance.md, against the bounds a reduced-precision path
// must keep.
void expect_distributions_kept(const std::vector<float>& logits, const Fixture& fixture, int64_t vocab,
                               const std::string& label) {
  ASSERT_EQ(logits.size(), fixture.logits.size());
  const auto positions = static_cast<int64_t>(fixture.prompt.size());
  double kl_total = 0, worst = 0;
  int64_t same_top1 = 0;
  for (int64_t t = 0; t < positions; ++t) {
    const float* want = fixture.logits.data() + t * vocab;
    const float* got = logits.data() + t * vocab;
    const double want_max = *std::max_element(want, want + vocab), got_max = *std::max_element(got, got + vocab);
    double want_sum = 0, got_sum = 0;
    for (int64_t v = 0; v < vocab; ++v) {
      want_sum += std::exp(want[v] - want_max);
      got_sum += std::exp(got[v] - got_max);
      worst = std::max(worst, double(std::fabs(got[v] - want[v])));
    }
    double kl = 0;
    for (int64_t v = 0; v < vocab; ++v) {
      const double log_p = want[v] - want_max - std::log(want_sum), log_q = got[v] - got_max - std::log(got_sum);
      kl += std::exp(log_p) * (log_p - log_q);
    }
    kl_total += kl;
    same_top1 += argmax(want, vocab) == argmax(got, vocab);
  }
  const double mean_kl = kl_total / double(positions), top1 = double(same_top1) / double(positions);
  std::printf("%s: mean KL %.3g, top-1 agreement %.4f, max |dlogit| / std %.3g\n", label.c_str(), mean_kl, top1,
              worst / fixture.logits_std);
  EXPECT_LE(mean_kl, 1e-4) << label;
  EXPECT_GE(top1, 0.98) << label;
}

TEST_P(GoldenForward, F16KvCacheKeepsTheDistributionsAndTheGreedyTokens) {
  KvCache cache(model_->config, 256, 16, DType::F16);
  KvSequence seq;
  auto logits = prompt_logits(cache, seq, fixture_.prompt.size());
  expect_distributions_kept(logits, fixture_, vocab_, "f16 KV, " + GetParam().fixture);
  EXPECT_EQ(greedy_after_prompt(cache, seq, logits), fixture_.greedy);
}

// Activations rounded to bf16 where they meet bf16 weights (the HF fixtures' weights are bf16;
// vdpbf16ps on CPUs with AVX512-BF16, elsewhere the f32 path), judged the same way.
TEST_P(GoldenForward, Bf16ActivationsKeepTheDistributionsAndTheGreedyTokens) {
  model_.reset();  // bound to the backend it was loaded onto
  backend_ = std::make_unique<CpuBackend>(*GetParam().isa, ActivationPrecision::Bf16);
  model_ = load_model(GetParam().from_gguf ? dir_ + "/model.f32.gguf" : dir_, *backend_);
  KvCache cache(model_->config, 256, 16, DType::F16);
  KvSequence seq;
  auto logits = prompt_logits(cache, seq, fixture_.prompt.size());
  expect_distributions_kept(logits, fixture_, vocab_, "bf16 activations and f16 KV, " + backend_->name() + ", " +
                                                          GetParam().fixture);
  EXPECT_EQ(greedy_after_prompt(cache, seq, logits), fixture_.greedy);
}

std::vector<GoldenCase> golden_cases() {
  std::vector<GoldenCase> cases;
  std::vector<const cpu::IsaKernels*> isas{&cpu::scalar_kernels()};
  if (auto* k = cpu::avx2_kernels()) isas.push_back(k);
  if (auto* k = cpu::avx512_kernels()) isas.push_back(k);
  for (const char* fixture : {"tiny-r1-qwen", "tiny-r1-llama"})
    for (bool from_gguf : {false, true})
      for (auto* isa : isas) cases.push_back({fixture, isa, from_gguf});
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Fixtures, GoldenForward, ::testing::ValuesIn(golden_cases()), [](const auto& info) {
  std::string name = info.param.fixture + (info.param.from_gguf ? "_gguf_" : "_hf_") + info.param.isa->name;
  std::replace(name.begin(), name.end(), '-', '_');
  return name;
});

}  // namespace
}  // namespace retort
