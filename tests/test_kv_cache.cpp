// KvCache::copy_prefix: the copied positions equal the source's in every layer (keys and values),
// across block boundaries and with the two sequences' blocks in different places in the pool;
// nothing else changes; and a sequence continued from a copied prompt gives the logits of
// evaluating the whole text from scratch.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "kernels/cpu/cpu_backend.h"
#include "model/kv_cache.h"
#include "model/model_loader.h"
#include "model/transformer.h"
#include "test_support.h"
#include "util/error.h"

namespace retort {
namespace {

ModelConfig small_config() {
  ModelConfig config;
  config.num_layers = 3;
  config.num_kv_heads = 2;
  config.head_dim = 3;  // kv_dim 6
  return config;
}

// Fills every slot of every layer with distinct random values.
void fill_random(KvCache& cache, int64_t layers, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> value(-1.0f, 1.0f);
  for (int64_t l = 0; l < layers; ++l) {
    const KvCacheLayout layout = cache.layer(l);
    const int64_t floats = cache.total_blocks() * layout.block_size * layout.kv_dim;
    for (int64_t i = 0; i < floats; ++i) {
      static_cast<float*>(layout.keys)[i] = value(rng);
      static_cast<float*>(layout.values)[i] = value(rng);
    }
  }
}

std::vector<float> snapshot(KvCache& cache, int64_t layers) {
  std::vector<float> all;
  for (int64_t l = 0; l < layers; ++l) {
    const KvCacheLayout layout = cache.layer(l);
    const int64_t floats = cache.total_blocks() * layout.block_size * layout.kv_dim;
    const auto* keys = static_cast<const float*>(layout.keys);
    const auto* values = static_cast<const float*>(layout.values);
    all.insert(all.end(), keys, keys + floats);
    all.insert(all.end(), values, values + floats);
  }
  return all;
}

TEST(KvCacheCopyPrefix, CopiesEveryLayerAcrossBlockBoundariesAndNothingElse) {
  const ModelConfig config = small_config();
  const int64_t kv_dim = config.kv_dim(), block = 5;
  for (const int64_t positions : {0, 1, 4, 5, 6, 13, 17}) {
    KvCache cache(config, 80, block);
    KvSequence spacer, from, to;
    ASSERT_TRUE(cache.reserve(spacer, 7));  // so `to`'s blocks do not follow `from`'s
    ASSERT_TRUE(cache.reserve(from, 17));
    ASSERT_TRUE(cache.reserve(to, positions + 3));
    from.length = 17;
    fill_random(cache, config.num_layers, uint32_t(positions));
    const std::vector<float> before = snapshot(cache, config.num_layers);
    cache.copy_prefix(from, to, positions);
    EXPECT_EQ(to.length, positions);
    const std::vector<float> after = snapshot(cache, config.num_layers);
    std::vector<float> expected = before;  // `to`'s first positions take `from`'s values, per layer
    const int64_t layer_floats = cache.total_blocks() * block * kv_dim;
    const KvCacheLayout layout = cache.layer(0);  // where each head's row of a slot is
    for (int64_t l = 0; l < config.num_layers; ++l) {
      for (int64_t p = 0; p < positions; ++p) {
        for (int64_t part = 0; part < 2; ++part) {  // keys, then values, one KV head's row at a time
          const int64_t base = (2 * l + part) * layer_floats;
          for (int64_t h = 0; h < config.num_kv_heads; ++h)
            std::copy_n(before.begin() + base + layout.row_offset(cache.slot(from, p), h), config.head_dim,
                        expected.begin() + base + layout.row_offset(cache.slot(to, p), h));
        }
      }
    }
    EXPECT_EQ(after, expected) << positions << " positions";
  }
}

TEST(KvCacheCopyPrefix, RejectsUnreservedOrTooLongCopies) {
  KvCache cache(small_config(), 64, 4);
  KvSequence from, to;
  ASSERT_TRUE(cache.reserve(from, 10));
  from.length = 10;
  ASSERT_TRUE(cache.reserve(to, 8));
  EXPECT_THROW(cache.copy_prefix(from, to, 9), Error) << "to has room for 8";
  EXPECT_THROW(cache.copy_prefix(from, to, 11), Error) << "from holds 10";
  EXPECT_NO_THROW(cache.copy_prefix(from, to, 8));
}

// Logits of `tokens` appended to `sequence` (LogitsWanted::All).
std::vector<float> forward_all(Transformer& model, KvCache& cache, KvSequence& sequence,
                               const std::vector<int32_t>& tokens) {
  EXPECT_TRUE(cache.reserve(sequence, sequence.length + int64_t(tokens.size())));
  SequenceChunk chunk{&sequence, tokens, LogitsWanted::All};
  std::vector<float> logits;
  model.forward({&chunk, 1}, cache, logits);
  return logits;
}

TEST(KvCacheCopyPrefix, SequenceContinuedFromACopiedPromptMatchesFromScratch) {
  const std::string dir = test::shared_path("fixtures/tiny-r1-qwen");
  RETORT_REQUIRE_PATH(dir, "the tiny-r1-qwen fixture");
  CpuBackend backend;
  auto model = load_model(dir, backend);
  Transformer& t = *model->transformer;
  KvCache cache(model->config, 256, 4);  // small blocks: the 11-token prompt ends mid-block
  const std::vector<int32_t> prompt{5, 77, 301, 12, 9, 400, 2, 18, 250, 7, 33};
  const std::vector<int32_t> rest{41, 200, 511, 3, 3, 90};
  KvSequence source, copy, scratch, spacer;
  forward_all(t, cache, source, prompt);
  ASSERT_TRUE(cache.reserve(spacer, 9));
  ASSERT_TRUE(cache.reserve(copy, int64_t(prompt.size())));
  cache.copy_prefix(source, copy, int64_t(prompt.size()));
  // The source goes on differently (overwriting the rest of its last block) before the copy continues.
  forward_all(t, cache, source, {1, 2, 3, 4, 5, 6, 7});
  const std::vector<float> continued = forward_all(t, cache, copy, rest);
  std::vector<int32_t> whole = prompt;
  whole.insert(whole.end(), rest.begin(), rest.end());
  const std::vector<float> all = forward_all(t, cache, scratch, whole);
  const size_t V = size_t(model->config.vocab_size);
  ASSERT_EQ(continued.size(), rest.size() * V);
  const float* expected = all.data() + prompt.size() * V;
  double worst = 0;
  for (size_t i = 0; i < continued.size(); ++i) worst = std::max(worst, double(std::abs(continued[i] - expected[i])));
  EXPECT_LT(worst, 1e-4) << "continued logits differ from evaluating the whole text";
}

}  // namespace
}  // namespace retort

namespace retort {
namespace {

// An int8 cache's row scales travel with its rows: the copied positions read back the same
// levels and the same scales, per layer and KV head.
TEST(KvCacheCopyPrefix, Int8CacheCopiesRowsWithTheirScales) {
  ModelConfig config = small_config();
  config.head_dim = 4;
  const int64_t kv_dim = config.kv_dim(), kv_heads = config.num_kv_heads, block = 5, positions = 13;
  KvCache cache(config, 80, block, kv_cache_type("q8"));
  KvSequence spacer, from, to;
  ASSERT_TRUE(cache.reserve(spacer, 7));
  ASSERT_TRUE(cache.reserve(from, 17));
  ASSERT_TRUE(cache.reserve(to, positions));
  from.length = 17;
  std::mt19937 rng(9);
  for (int64_t l = 0; l < config.num_layers; ++l) {
    const KvCacheLayout layout = cache.layer(l);
    ASSERT_EQ(layout.dtype, DType::I8);
    ASSERT_NE(layout.key_scales, nullptr);
    const int64_t slots = cache.total_blocks() * block;
    for (int64_t i = 0; i < slots * kv_dim; ++i) {
      static_cast<int8_t*>(layout.keys)[i] = static_cast<int8_t>(rng());
      static_cast<int8_t*>(layout.values)[i] = static_cast<int8_t>(rng());
    }
    for (int64_t i = 0; i < slots * kv_heads; ++i) {
      layout.key_scales[i] = static_cast<float>(rng() % 1000);
      layout.value_scales[i] = static_cast<float>(rng() % 1000);
    }
  }
  cache.copy_prefix(from, to, positions);
  for (int64_t l = 0; l < config.num_layers; ++l) {
    const KvCacheLayout layout = cache.layer(l);
    for (int64_t p = 0; p < positions; ++p) {
      const int64_t source = cache.slot(from, p), target = cache.slot(to, p);
      for (int64_t h = 0; h < kv_heads; ++h)
        for (int64_t d = 0; d < config.head_dim; ++d) {
          const int64_t t = layout.row_offset(target, h) + d, s = layout.row_offset(source, h) + d;
          EXPECT_EQ(static_cast<int8_t*>(layout.keys)[t], static_cast<int8_t*>(layout.keys)[s]);
          EXPECT_EQ(static_cast<int8_t*>(layout.values)[t], static_cast<int8_t*>(layout.values)[s]);
        }
      for (int64_t h = 0; h < kv_heads; ++h) {
        EXPECT_EQ(layout.key_scales[target * kv_heads + h], layout.key_scales[source * kv_heads + h]) << l << " " << p;
        EXPECT_EQ(layout.value_scales[target * kv_heads + h], layout.value_scales[source * kv_heads + h]) << l << " " << p;
      }
    }
  }
  EXPECT_EQ(cache.bytes(), static_cast<size_t>(2 * config.num_layers * cache.total_blocks() * block * (kv_dim + kv_heads * 4)));
}

TEST(KvCacheType, NamesAndErrors) {
  EXPECT_EQ(kv_cache_type("q8"), DType::I8);
  EXPECT_EQ(kv_cache_type_name(DType::I8), "q8");
  EXPECT_EQ(kv_cache_type_name(DType::F16), "f16");
  EXPECT_THROW(kv_cache_type("q4"), Error);
}

}  // namespace
}  // namespace retort
