// Micro-benchmarks of the CPU kernels on the shapes of DeepSeek-R1-Distill-Qwen-1.5B: matmul for
// decode (1 token: bandwidth-bound, reported as bytes/s of weights) and prefill (128 tokens:
// compute-bound, reported as FLOP/s), per weight type and instruction set; one decode step's
// attention on the 8B shape at depth 4096, from L3 and from memory, beside a plain sequential read
// of the same bytes (BM_ReadBandwidth, the baseline it is judged by).
//   bench_kernels [--benchmark_filter=...]    RETORT_THREADS=N sets the thread count (default 1)
#include <benchmark/benchmark.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "tensor/quant_blocks.h"
#include "util/huge_page_buffer.h"
#include "util/thread_pool.h"

namespace retort {
namespace {

struct MatmulCase {
  std::vector<uint16_t> weights;
  std::vector<float> in, out;
  WeightMatrix matrix;
};

MatmulCase make_case(int64_t rows, int64_t cols, int64_t tokens) {
  MatmulCase c;
  std::mt19937 rng(1);
  std::normal_distribution<float> dist(0.0f, 0.02f);
  c.weights.resize(static_cast<size_t>(rows * cols));
  for (auto& w : c.weights) w = f32_to_bf16(dist(rng));
  c.in.resize(static_cast<size_t>(tokens * cols));
  for (auto& x : c.in) x = dist(rng);
  c.out.resize(static_cast<size_t>(tokens * rows));
  c.matrix = WeightMatrix{DType::BF16, c.weights.data(), rows, cols};
  return c;
}

const cpu::IsaKernels& isa_by_index(int64_t index) {
  if (index == 2 && cpu::avx512_kernels()) return *cpu::avx512_kernels();
  if (index >= 1 && cpu::avx2_kernels()) return *cpu::avx2_kernels();
  return cpu::scalar_kernels();
}

// Args: rows, cols, tokens, isa (0 scalar, 1 avx2, 2 avx512)
void BM_MatmulBf16(benchmark::State& state) {
  const int64_t rows = state.range(0), cols = state.range(1), tokens = state.range(2);
  const cpu::IsaKernels& isa = isa_by_index(state.range(3));
  CpuBackend backend(isa);
  MatmulCase c = make_case(rows, cols, tokens);
  for (auto _ : state) {
    backend.matmul(c.out.data(), c.in.data(), c.matrix, tokens);
    benchmark::DoNotOptimize(c.out.data());
  }
  state.SetLabel(isa.name);
  state.SetBytesProcessed(state.iterations() * rows * cols * 2);
  state.counters["GFLOP/s"] =
      benchmark::Counter(static_cast<double>(state.iterations()) * 2.0 * rows * cols * tokens / 1e9,
                         benchmark::Counter::kIsRate);
}

void MatmulShapes(benchmark::internal::Benchmark* b) {
  for (int64_t isa : {1, 2}) {
    for (int64_t tokens : {1, 4, 128}) {
      b->Args({1536, 1536, tokens, isa});   // q_proj / o_proj
      b->Args({8960, 1536, tokens, isa});   // gate / up
      b->Args({1536, 8960, tokens, isa});   // down
    }
  }
}
BENCHMARK(BM_MatmulBf16)->Apply(MatmulShapes)->Unit(benchmark::kMillisecond)->UseRealTime();

// Block-quantized weights on the integer dot-product path (few tokens) or sgemm (many); args:
// rows, cols, tokens, dtype (0 q8_0, 1 q4_0, 2 q4_k, 3 q6_k). Same shapes as BM_MatmulBf16, whose
// bytes/s and time per call are the baseline.
void BM_MatmulQuantized(benchmark::State& state) {
  const int64_t rows = state.range(0), cols = state.range(1), tokens = state.range(2);
  const DType dtypes[] = {DType::Q8_0, DType::Q4_0, DType::Q4_K, DType::Q6_K};
  const DType dtype = dtypes[state.range(3)];
  MatmulCase c = make_case(rows, cols, tokens);
  std::vector<float> values(static_cast<size_t>(rows * cols));
  for (size_t i = 0; i < values.size(); ++i) values[i] = bf16_to_f32(c.weights[i]);
  // RETORT_BENCH_WEIGHT_OFFSET: where in a 64-byte line the weights start (a GGUF file aligns
  // tensors to 32 bytes, so a loaded model's matrices start at 0 or 32).
  const char* offset_env = std::getenv("RETORT_BENCH_WEIGHT_OFFSET");
  const size_t offset = offset_env ? static_cast<size_t>(std::atoi(offset_env)) : 0;
  const size_t weight_bytes = dtype_row_bytes(dtype, cols) * static_cast<size_t>(rows);
  // The fifth arg: copies of the matrix used in turn, so that a matrix about the size of
  // the L3 cannot be partly served from it (a decode step reads 4 GB of weights between two reads
  // of one matrix).
  const auto copies = static_cast<size_t>(state.range(4));
  // In huge pages, as a loaded model's weights are (MappedFile's private copy).
  const size_t copy_bytes = (weight_bytes + offset + 63) / 64 * 64;
  HugePageBuffer storage(copy_bytes * copies + 64);
  const auto line_start = (reinterpret_cast<uintptr_t>(storage.data()) + 63) / 64 * 64;
  std::vector<WeightMatrix> matrices;
  CpuBackend backend;
  const auto copy_at = [&](size_t copy) { return reinterpret_cast<uint8_t*>(line_start) + copy * copy_bytes + offset; };
  quantize_rows(block_type_of(dtype), values.data(), copy_at(0), rows, cols);
  for (size_t copy = 1; copy < copies; ++copy) std::copy_n(copy_at(0), weight_bytes, copy_at(copy));
  for (size_t copy = 0; copy < copies; ++copy) {
    matrices.push_back(WeightMatrix{dtype, copy_at(copy), rows, cols});
    backend.repack(matrices.back(), copy_at(copy));  // the layout a loaded model's weights are in
  }
  size_t next = 0;
  for (auto _ : state) {
    backend.matmul(c.out.data(), c.in.data(), matrices[next], tokens);
    benchmark::DoNotOptimize(c.out.data());
    next = (next + 1) % copies;
  }
  state.SetLabel(backend.name() + " " + std::string(dtype_name(dtype)));
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(weight_bytes));
}

void QuantizedShapes(benchmark::internal::Benchmark* b) {
  for (int64_t dtype : {0, 1, 2, 3})
    for (int64_t tokens : {1, 4}) {
      b->Args({8960, 1536, tokens, dtype, 1});
      b->Args({1536, 8960, tokens, dtype, 1});
    }
  // 512 x 1536 fits in L2 at every type: the kernel's arithmetic speed per byte, without memory.
  for (int64_t dtype : {0, 1, 2, 3}) b->Args({512, 1536, 1, dtype, 1});
  // 28672 x 4096 (the 8B's gate and up together) in 4 copies, far larger than any L3: the kernel
  // from memory, to set beside BM_ReadBandwidth/32.
  for (int64_t dtype : {0, 1, 2, 3}) b->Args({28672, 4096, 1, dtype, 4});
  b->Args({151936, 1536, 1, 3, 1});  // the 1.5B's output matrix, Q6_K in the Q4_K_M recipe
  // The 1.5B's decode matrices from memory (enough copies that the L3 holds few of them): ffn_up,
  // ffn_down, and q/k/v's 2048 rows, whose few microseconds a call show what a call costs besides
  // its bytes. q8_0 and q4_0 side by side show how much of the probe each format's kernel reaches.
  for (int64_t dtype : {0, 1}) {
    b->Args({8960, 1536, 1, dtype, 32});
    b->Args({1536, 8960, 1, dtype, 64});
    b->Args({2048, 1536, 1, dtype, 32});
  }
}
BENCHMARK(BM_MatmulQuantized)->Apply(QuantizedShapes)->Unit(benchmark::kMillisecond)->UseRealTime();

// One decode step's matmuls on the 1.5B shape, layer after layer, each layer's weights its own
// (28 layers, 0.7 GB at q4_0): q/k/v together, the output projection, gate/up together, down, in a
// model's order. A matrix read alone in a loop can be partly served from the caches and pays its
// thread hand-off back to back; here each call meets the cache state a real step leaves it.
// Counters give µs a call per matrix set; bytes/s counts all weights. Arg: dtype (0 q8_0, 1 q4_0,
// 2 q4_k).
void BM_DecodeStepMatmuls(benchmark::State& state) {
  constexpr int64_t kLayers = 28, kDim = 1536, kKv = 256, kFfn = 8960;
  const DType dtypes[] = {DType::Q8_0, DType::Q4_0, DType::Q4_K};
  const DType dtype = dtypes[state.range(0)];
  struct Shape { int64_t rows, cols; };
  const Shape shapes[] = {{kDim, kDim}, {kKv, kDim}, {kKv, kDim}, {kDim, kDim}, {kFfn, kDim}, {kFfn, kDim}, {kDim, kFfn}};
  std::array<size_t, 7> bytes{}, offsets{};  // each matrix's bytes, and where it starts in a layer
  size_t layer_bytes = 0;
  for (size_t m = 0; m < 7; ++m) {
    bytes[m] = dtype_row_bytes(dtype, shapes[m].cols) * static_cast<size_t>(shapes[m].rows);
    offsets[m] = layer_bytes;
    layer_bytes += (bytes[m] + 63) / 64 * 64;
  }
  HugePageBuffer storage(layer_bytes * kLayers);
  CpuBackend backend;
  std::vector<std::array<WeightMatrix, 7>> layers(kLayers);
  std::mt19937 rng(1);
  std::normal_distribution<float> dist(0.0f, 0.02f);
  for (size_t m = 0; m < 7; ++m) {
    const Shape s = shapes[m];
    std::vector<float> values(static_cast<size_t>(s.rows * s.cols));
    for (float& v : values) v = dist(rng);
    const auto at = [&](int64_t l) { return storage.data() + static_cast<size_t>(l) * layer_bytes + offsets[m]; };
    quantize_rows(block_type_of(dtype), values.data(), at(0), s.rows, s.cols);
    for (int64_t l = 1; l < kLayers; ++l) std::copy_n(at(0), bytes[m], at(l));  // before layer 0 is repacked
    for (int64_t l = kLayers - 1; l >= 0; --l) {
      layers[l][m] = WeightMatrix{dtype, at(l), s.rows, s.cols};
      backend.repack(layers[l][m], at(l));  // the layout a loaded model's weights are in
    }
  }
  std::vector<float> x(kFfn, 0.01f), q(kDim), k(kKv), v(kKv), o(kDim), gate(kFfn), up(kFfn), down(kDim);
  double seconds[4] = {};
  for (auto _ : state) {
    for (const auto& w : layers) {
      auto start = std::chrono::steady_clock::now();
      auto lap = [&](int op) {
        const auto now = std::chrono::steady_clock::now();
        seconds[op] += std::chrono::duration<double>(now - start).count();
        start = now;
      };
      const MatmulTarget qkv[] = {{q.data(), w[0]}, {k.data(), w[1]}, {v.data(), w[2]}};
      backend.matmuls(x.data(), 1, qkv);
      lap(0);
      backend.matmul(o.data(), q.data(), w[3], 1);
      lap(1);
      const MatmulTarget gate_up[] = {{gate.data(), w[4]}, {up.data(), w[5]}};
      backend.matmuls(o.data(), 1, gate_up);
      lap(2);
      backend.matmul(down.data(), gate.data(), w[6], 1);
      lap(3);
    }
    benchmark::DoNotOptimize(down.data());
  }
  const double calls = static_cast<double>(state.iterations()) * kLayers;
  const char* names[] = {"qkv_us", "wo_us", "gate_up_us", "down_us"};
  for (int op = 0; op < 4; ++op) state.counters[names[op]] = seconds[op] * 1e6 / calls;
  state.SetLabel(backend.name() + " " + std::string(dtype_name(dtype)));
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(layer_bytes * kLayers));
}
BENCHMARK(BM_DecodeStepMatmuls)->Arg(0)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();

// One decode step's attention on the R1-Distill-Llama-8B shape (32 query heads, 8 KV heads of
// 128) over `depth` cached positions; args: depth, kv type (0 f32, 1 f16, 2 int8), layers. With
// one layer the cache stays in L3 (the kernel's arithmetic); with 32 each call reads the next
// layer's cache, as a real decode step does, so it comes from memory. Bytes/s counts K and V.
void BM_AttentionDecode(benchmark::State& state) {
  const int64_t depth = state.range(0), layers = state.range(2);
  const DType dtypes[] = {DType::F32, DType::F16, DType::I8};
  const DType dtype = dtypes[state.range(1)];
  const AttentionShape shape{32, 8, 128, 1.0f / std::sqrt(128.0f)};
  const int64_t kv_dim = shape.num_kv_heads * shape.head_dim, block_size = 16;
  const int64_t blocks = (depth + block_size - 1) / block_size;
  const size_t layer_elements = static_cast<size_t>(blocks * block_size * kv_dim);
  const size_t layer_bytes = layer_elements * dtype_size(dtype);
  HugePageBuffer keys(layer_bytes * static_cast<size_t>(layers)), values(keys.size());  // as the KV cache is
  std::vector<float> scales(static_cast<size_t>(blocks * block_size * shape.num_kv_heads * layers), 0.01f);
  // Small finite values from a table indexed by a cheap hash: speed does not depend on them, and
  // filling 512 MiB through the random engine and f32_to_f16 took longer than the runs.
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> value(-1.0f, 1.0f);
  std::vector<float> pool(4096);
  for (float& x : pool) x = value(rng);
  const size_t elements = layer_elements * static_cast<size_t>(layers);
  auto fill = [&](uint8_t* bytes, uint32_t salt) {
    for (size_t i = 0; i < elements; ++i) {
      const float x = pool[((static_cast<uint32_t>(i) ^ salt) * 2654435761u) >> 20];
      if (dtype == DType::F16) reinterpret_cast<uint16_t*>(bytes)[i] = f32_to_f16(x);
      else if (dtype == DType::F32) reinterpret_cast<float*>(bytes)[i] = x;
      else bytes[i] = static_cast<uint8_t>(static_cast<int8_t>(x * 127.0f));
    }
  };
  fill(keys.data(), 0x1234u);
  fill(values.data(), 0x9876u);
  std::vector<int32_t> table(static_cast<size_t>(blocks));
  for (int64_t b = 0; b < blocks; ++b) table[static_cast<size_t>(b)] = static_cast<int32_t>(b);
  std::vector<float> q(static_cast<size_t>(shape.num_heads * shape.head_dim), 0.1f), out(q.size());
  const AttentionQuery query{KvBlockTable{table.data(), blocks}, depth};
  CpuBackend backend;
  int64_t layer = 0;
  for (auto _ : state) {
    const size_t scale_offset = static_cast<size_t>(layer * blocks * block_size * shape.num_kv_heads);
    KvCacheLayout cache{keys.data() + layer * layer_bytes, values.data() + layer * layer_bytes, block_size, kv_dim,
                        dtype, shape.head_dim, nullptr, nullptr};
    if (dtype == DType::I8) {
      cache.key_scales = scales.data() + scale_offset;
      cache.value_scales = scales.data() + scale_offset;
    }
    backend.attention(out.data(), q.data(), &query, 1, cache, shape);
    benchmark::DoNotOptimize(out.data());
    layer = (layer + 1) % layers;
  }
  state.SetLabel(backend.name() + " kv " + std::string(dtype_name(dtype)));
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(2 * depth * kv_dim * dtype_size(dtype)));
}
BENCHMARK(BM_AttentionDecode)
    ->ArgsProduct({{4096}, {1, 2}, {1, 32}})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

// The baseline for BM_AttentionDecode from memory: one sequential read of 16 MiB (a depth-4096
// f16 layer's K and V) per call, cycling through 32 such layers in the same kind of buffer, split
// over the threads in 512 KiB runs like attention's chunks. Bytes/s is what the attention could reach.
void BM_ReadBandwidth(benchmark::State& state) {
  constexpr size_t kLayerBytes = 16u << 20, kRunBytes = 512u << 10;
  const auto layers = static_cast<size_t>(state.range(0));
  HugePageBuffer buffer(kLayerBytes * layers);
  auto* floats = reinterpret_cast<float*>(buffer.data());
  std::fill(floats, floats + buffer.size() / sizeof(float), 1.0f);
  const cpu::IsaKernels& kernels = cpu::active_kernels();
  std::vector<float> sinks(kLayerBytes / kRunBytes);
  size_t layer = 0;
  for (auto _ : state) {
    const float* base = floats + layer * kLayerBytes / sizeof(float);
    thread_pool().parallel_for(sinks.size(), 1, [&](size_t begin, size_t end) {
      for (size_t r = begin; r < end; ++r)
        sinks[r] = kernels.dot(base + r * kRunBytes / sizeof(float), base + r * kRunBytes / sizeof(float),
                               static_cast<int64_t>(kRunBytes / sizeof(float)));
    });
    benchmark::DoNotOptimize(sinks.data());
    layer = (layer + 1) % layers;
  }
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(kLayerBytes));
}
BENCHMARK(BM_ReadBandwidth)->Arg(1)->Arg(32)->Unit(benchmark::kMicrosecond)->UseRealTime();

// The cost of one parallel loop over the pool's threads with almost no work in it: what every
// kernel call of a decode step pays on top of its arithmetic (RETORT_THREADS sets the pool).
void BM_ParallelForOverhead(benchmark::State& state) {
  std::vector<float> sink(64);
  for (auto _ : state) {
    thread_pool().parallel_for(sink.size(), 1, [&](size_t begin, size_t end) {
      for (size_t i = begin; i < end; ++i) sink[i] += 1.0f;
    });
    benchmark::DoNotOptimize(sink.data());
  }
  state.SetLabel(std::to_string(thread_pool().size()) + " threads");
}
BENCHMARK(BM_ParallelForOverhead)->Unit(benchmark::kMicrosecond)->UseRealTime();

}  // namespace
}  // namespace retort

int main(int argc, char** argv) {
  const char* threads = std::getenv("RETORT_THREADS");
  retort::set_thread_count(threads ? std::atoi(threads) : 1);
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  return 0;
}
