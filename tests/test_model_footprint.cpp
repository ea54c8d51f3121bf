// What a model will hold once loaded, known before loading it (retort serve --max-memory plans with
// it): the weight files' bytes and the KV cache the server will make, for a checkpoint directory and
// a GGUF file of the golden fixtures. The node test model_budget.test.mjs checks it against RSS.
#include <gtest/gtest.h>

#include <filesystem>

#include "model/kv_cache.h"
#include "model/model_footprint.h"
#include "test_support.h"
#include "util/error.h"
#include "util/huge_page_buffer.h"
#include "util/process_memory.h"

namespace retort {
namespace {

// The huge-page share bench_inference prints is read from smaps_rollup: it is part of the resident
// memory, and a committed huge-page buffer is resident (whether the kernel gave it 2 MiB pages
// depends on the machine's memory at the time, so only the bounds are checked).
TEST(ProcessMemory, HugePagesAreCountedWithinTheResidentMemory) {
  HugePageBuffer buffer(8u << 20);
  buffer.commit();
  const uint64_t resident = resident_bytes();
  if (resident == 0) GTEST_SKIP() << "/proc/self/status is not readable here";
  EXPECT_GE(resident, uint64_t{8} << 20);
  EXPECT_LE(huge_page_bytes(), resident);
}

TEST(ModelFootprint, ACheckpointDirectoryCostsItsSafetensorsAndItsKvPool) {
  const std::string dir = test::shared_path("fixtures/tiny-r1-qwen");
  RETORT_REQUIRE_PATH(dir, "fixture tiny-r1-qwen");
  const ModelFootprint footprint = estimate_model_footprint(dir, 4096, DType::F16);
  // The directory also holds model.f32.gguf, which loading the directory does not read.
  EXPECT_EQ(footprint.weights_bytes, std::filesystem::file_size(std::filesystem::path(dir) / "model.safetensors"));
  const KvCache cache(footprint.config, 4096, KvCache::kDefaultBlockSize, DType::F16);
  EXPECT_EQ(footprint.kv_cache_bytes, cache.bytes());
  // 3 layers × 2 (keys, values) × 4096 positions × 32 (2 KV heads of 16) × 2 bytes.
  EXPECT_EQ(footprint.kv_cache_bytes, 3u * 2 * 4096 * 32 * 2);
  EXPECT_EQ(footprint.total(), footprint.weights_bytes + footprint.kv_cache_bytes);
}

TEST(ModelFootprint, AGgufFileCostsItsFileAndReadsTheSameConfiguration) {
  const std::string gguf = test::shared_path("fixtures/tiny-r1-llama/model.f32.gguf");
  RETORT_REQUIRE_PATH(gguf, "fixture tiny-r1-llama/model.f32.gguf");
  const ModelFootprint from_gguf = estimate_model_footprint(gguf, 1000, DType::F32);
  EXPECT_EQ(from_gguf.weights_bytes, std::filesystem::file_size(gguf));
  const ModelFootprint from_dir =
      estimate_model_footprint(std::filesystem::path(gguf).parent_path().string(), 1000, DType::F32);
  EXPECT_EQ(from_gguf.config.num_layers, from_dir.config.num_layers);
  EXPECT_EQ(from_gguf.config.kv_dim(), from_dir.config.kv_dim());
  // 1000 positions are 63 blocks of 16: the pool is whole blocks.
  EXPECT_EQ(from_gguf.kv_cache_bytes, KvCache(from_gguf.config, 1000, KvCache::kDefaultBlockSize, DType::F32).bytes());
  EXPECT_EQ(from_gguf.kv_cache_bytes, from_dir.kv_cache_bytes);
}

TEST(ModelFootprint, APathThatIsNoModelIsRefusedAsLoadingWouldBe) {
  EXPECT_THROW(estimate_model_footprint("/nonexistent/model.gguf", 16, DType::F16), Error);
  const std::string readme = test::shared_path("fixtures/README.md");
  RETORT_REQUIRE_PATH(readme, "fixtures/README.md");
  EXPECT_THROW(estimate_model_footprint(readme, 16, DType::F16), Error);
}

}  // namespace
}  // namespace retort
