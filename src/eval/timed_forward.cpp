#include "eval/timed_forward.h"

#include <sys/mman.h>

#include <algorithm>
#include <random>

#include "engine/sampler.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/isa_kernels.h"
#include "util/error.h"
#include "util/thread_pool.h"
#include "util/timer.h"

namespace retort {

std::vector<int32_t> synthetic_prompt(int64_t tokens, int64_t vocab_size) {
  constexpr int64_t kFirstId = 10;
  require(vocab_size > kFirstId, ErrorKind::InvalidInput, "a vocabulary of {} entries is too small to benchmark",
          vocab_size);
  const int64_t spread = std::min<int64_t>(1000, vocab_size - kFirstId);
  std::vector<int32_t> prompt(static_cast<size_t>(tokens));
  for (size_t i = 0; i < prompt.size(); ++i)
    prompt[i] = static_cast<int32_t>(static_cast<int64_t>(i * 7919 + 13) % spread + kFirstId);
  return prompt;
}

void fill_synthetic_context(Transformer& model, KvCache& cache, KvSequence& sequence, int64_t positions) {
  require(cache.reserve(sequence, positions), ErrorKind::Internal, "the KV cache has no room for {} positions",
          positions);
  const ModelConfig& config = model.config();
  std::mt19937 rng(7);
  std::normal_distribution<float> value(0.0f, 1.0f);
  std::vector<float> rows(static_cast<size_t>(positions * config.kv_dim()));
  std::vector<int64_t> slots(static_cast<size_t>(positions));
  for (int64_t p = 0; p < positions; ++p) slots[static_cast<size_t>(p)] = cache.slot(sequence, p);
  CpuBackend writer;  // not the model's backend: a profiling wrapper would count this as work
  for (int64_t layer = 0; layer < config.num_layers; ++layer) {
    for (float& v : rows) v = value(rng);
    writer.kv_write(cache.layer(layer), rows.data(), rows.data(), slots.data(), positions);
  }
  sequence.length = positions;
}

void warm_up(Transformer& model, KvCache& cache, std::span<const int32_t> prompt) {
  KvSequence warm;
  const auto tokens = prompt.first(std::min<size_t>(prompt.size(), 8));
  require(cache.reserve(warm, static_cast<int64_t>(tokens.size())), ErrorKind::Internal, "the KV cache is full");
  std::vector<float> logits;
  SequenceChunk chunk{&warm, tokens, LogitsWanted::Last};
  model.forward({&chunk, 1}, cache, logits);
  cache.release(warm);
}

double time_prefill(Transformer& model, KvCache& cache, KvSequence& sequence, std::span<const int32_t> prompt,
                    std::vector<float>& logits) {
  require(cache.reserve(sequence, static_cast<int64_t>(prompt.size())), ErrorKind::Internal,
          "the KV cache has no room for a {}-token prompt", prompt.size());
  Timer timer;
  SequenceChunk chunk{&sequence, prompt, LogitsWanted::Last};
  model.forward({&chunk, 1}, cache, logits);
  return timer.seconds();
}

double time_greedy_decode(Transformer& model, KvCache& cache, KvSequence& sequence, int32_t first_token,
                          int64_t steps, std::vector<float>& logits) {
  require(cache.reserve(sequence, sequence.length + steps), ErrorKind::Internal,
          "the KV cache has no room for {} more positions", steps);
  int32_t token = first_token;
  Timer timer;
  for (int64_t i = 0; i < steps; ++i) {
    SequenceChunk step{&sequence, std::span<const int32_t>(&token, 1), LogitsWanted::Last};
    model.forward({&step, 1}, cache, logits);
    token = argmax(logits);
  }
  return timer.seconds();
}

int64_t batched_decode_positions(int64_t batch, int64_t context, int64_t steps, int64_t block_size) {
  const int64_t per_sequence = context + steps + 1;  // + the untimed first step
  return batch * ((per_sequence + block_size - 1) / block_size * block_size);
}

double time_batched_decode_step(Transformer& model, KvCache& cache, int64_t batch, int64_t context, int64_t steps) {
  std::vector<KvSequence> sequences(static_cast<size_t>(batch));
  for (KvSequence& sequence : sequences) {
    fill_synthetic_context(model, cache, sequence, context);
    require(cache.reserve(sequence, context + steps + 1), ErrorKind::Internal,
            "the KV cache has no room for {} sequences of {} positions", batch, context + steps + 1);
  }
  const std::vector<int32_t> tokens(static_cast<size_t>(batch), 42);
  std::vector<SequenceChunk> chunks(static_cast<size_t>(batch));
  std::vector<float> logits;
  auto step = [&] {
    for (size_t i = 0; i < chunks.size(); ++i)
      chunks[i] = {&sequences[i], std::span<const int32_t>(&tokens[i], 1), LogitsWanted::Last};
    model.forward(chunks, cache, logits);
  };
  step();
  Timer timer;
  for (int64_t s = 0; s < steps; ++s) step();
  const double seconds_per_step = timer.seconds() / static_cast<double>(std::max<int64_t>(steps, 1));
  for (KvSequence& sequence : sequences) cache.release(sequence);
  return seconds_per_step;
}

double weight_bytes_per_token(const ModelWeights& weights) {
  const WeightMatrix& table = weights.token_embedding;
  const bool tied = table.data == weights.lm_head.data;
  const double embedding = tied ? 0.0 : double(dtype_row_bytes(table.dtype, table.cols)) * double(table.rows);
  return double(weights.matrix_bytes) - embedding;
}

double kv_bytes_per_token(const ModelConfig& config, DType kv_type, int64_t depth, int64_t steps) {
  const double mean_context = double(depth) + double(steps) / 2.0;
  double position_bytes = double(config.kv_dim()) * double(dtype_size(kv_type));
  if (kv_type == DType::I8) position_bytes += double(config.num_kv_heads) * sizeof(float);  // the row scales
  return double(config.num_layers) * 2.0 * position_bytes * mean_context;
}

double measure_bandwidth_gbs(int threads, int64_t buffer_mib) {
  require(buffer_mib >= 1, ErrorKind::InvalidInput, "the bandwidth probe needs at least 1 MiB, not {}", buffer_mib);
  set_thread_count(threads);
  constexpr size_t kBlockFloats = 4096;
  const size_t bytes = static_cast<size_t>(buffer_mib) << 20;
  const size_t floats = bytes / sizeof(float);
  void* memory = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  require(memory != MAP_FAILED, ErrorKind::Io, "could not map {} MiB for the bandwidth probe; free some memory",
          buffer_mib);
  ::madvise(memory, bytes, MADV_HUGEPAGE);
  auto* buffer = static_cast<float*>(memory);
  std::fill(buffer, buffer + floats, 1.0f);
  std::vector<double> sinks(1024);  // keeps the dot products from being optimised away
  const cpu::IsaKernels& kernels = cpu::active_kernels();
  double best = 0;
  for (int pass = 0; pass < 5; ++pass) {
    Timer timer;
    thread_pool().parallel_for(floats / kBlockFloats, 64, [&](size_t begin, size_t end) {
      const float* block = buffer + begin * kBlockFloats;
      const auto count = static_cast<int64_t>((end - begin) * kBlockFloats);
      sinks[begin % sinks.size()] = kernels.dot(block, block, count);  // reads each byte once
    });
    best = std::max(best, double(bytes) / timer.seconds() / 1e9);
  }
  ::munmap(memory, bytes);
  return best;
}

}  // namespace retort
