#include "model/random_init.h"

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <numbers>

#include "io/safetensors.h"
#include "model/tensor_table.h"
#include "util/atomic_file.h"
#include "util/error.h"
#include "util/thread_pool.h"

namespace retort {

namespace {

// splitmix64: each value is a pure function of (seed, tensor, index), so threads need no shared
// generator state and the output does not depend on how the work was split.
uint64_t mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

double unit_interval_open(uint64_t bits) {  // (0, 1]: safe for log()
  return (static_cast<double>(bits >> 11) + 1.0) * (1.0 / 9007199254740992.0);
}

void store(uint8_t* out, int64_t index, float value, DType dtype) {
  switch (dtype) {
    case DType::F32: reinterpret_cast<float*>(out)[index] = value; break;
    case DType::F16: reinterpret_cast<uint16_t*>(out)[index] = f32_to_f16(value); break;
    case DType::BF16: reinterpret_cast<uint16_t*>(out)[index] = f32_to_bf16(value); break;
    default: fail(ErrorKind::Unsupported, "random init writes f32, f16 or bf16, not {}", dtype_name(dtype));
  }
}

void fill_normal(uint8_t* out, int64_t count, DType dtype, double stddev, uint64_t stream) {
  const int64_t pairs = (count + 1) / 2;
  thread_pool().parallel_for(static_cast<size_t>(pairs), 4096, [&](size_t begin, size_t end) {
    for (size_t pair = begin; pair < end; ++pair) {
      const uint64_t key = mix(stream ^ mix(pair));
      const double radius = stddev * std::sqrt(-2.0 * std::log(unit_interval_open(key)));
      const double angle = 2.0 * std::numbers::pi * unit_interval_open(mix(key));
      const auto first = static_cast<int64_t>(2 * pair);
      store(out, first, static_cast<float>(radius * std::cos(angle)), dtype);
      if (first + 1 < count) store(out, first + 1, static_cast<float>(radius * std::sin(angle)), dtype);
    }
  });
}

void fill_constant(uint8_t* out, int64_t count, DType dtype, float value) {
  for (int64_t i = 0; i < count; ++i) store(out, i, value, dtype);
}

bool is_norm(TensorRole role) {
  return role == TensorRole::AttnNorm || role == TensorRole::MlpNorm || role == TensorRole::OutputNorm;
}
bool is_bias(TensorRole role) { return role == TensorRole::Bq || role == TensorRole::Bk || role == TensorRole::Bv; }

}  // namespace

void write_random_checkpoint(const ModelConfig& config, const std::string& dir, const RandomInitOptions& options) {
  validate_model_config(config, "the model config");
  const std::vector<ExpectedTensor> expected = expected_tensors(config);
  std::vector<TensorToWrite> tensors;
  uint64_t total_bytes = 0;
  for (size_t i = 0; i < expected.size(); ++i) {
    int64_t count = 1;
    for (int64_t d : expected[i].shape) count *= d;
    const TensorRole role = expected[i].role;
    const uint64_t stream = mix(options.seed * 1000003ull + i);
    // Made while the file is written, one tensor at a time: a 70B config needs ~140 GB as bf16.
    auto generate = [count, role, stream, &options](std::span<uint8_t> out) {
      if (is_norm(role)) fill_constant(out.data(), count, options.dtype, 1.0f);
      else if (is_bias(role)) fill_constant(out.data(), count, options.dtype, 0.0f);
      else fill_normal(out.data(), count, options.dtype, options.stddev, stream);
    };
    const uint64_t bytes = static_cast<uint64_t>(count) * dtype_size(options.dtype);
    tensors.push_back({expected[i].name, options.dtype, expected[i].shape, {}, generate, bytes});
    total_bytes += bytes;
  }
  auto existing = std::filesystem::absolute(dir);  // space() needs a path that exists
  while (!std::filesystem::exists(existing) && existing.has_parent_path() && existing != existing.parent_path())
    existing = existing.parent_path();
  const auto space = std::filesystem::space(existing);
  require(total_bytes < space.available, ErrorKind::Io,
          "the checkpoint needs {:.1f} GB but '{}' has {:.1f} GB free; free some space or pass --out on a larger disk",
          total_bytes / 1e9, dir, space.available / 1e9);
  std::filesystem::create_directories(dir);
  write_safetensors_checkpoint(dir, tensors, options.max_shard_bytes, {{"format", "pt"}});
  ModelConfig written = config;
  written.torch_dtype = options.dtype == DType::F32 ? "float32" : options.dtype == DType::F16 ? "float16" : "bfloat16";
  write_file_atomically((std::filesystem::path(dir) / "config.json").string(), to_hf_config(written).dump(2) + "\n");
}

}  // namespace retort
