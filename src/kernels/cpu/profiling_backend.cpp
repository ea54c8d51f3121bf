#include "kernels/cpu/profiling_backend.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <vector>

namespace retort {

namespace {
std::string matmul_key(const WeightMatrix& w) {
  return fmt::format("matmul {} {}x{}", dtype_name(w.dtype), w.rows, w.cols);
}
}  // namespace

template <class Op>
void ProfilingBackend::timed(const std::string& key, Op&& op) {
  const auto start = std::chrono::steady_clock::now();
  op();
  Entry& entry = entries_[key];
  entry.calls += 1;
  entry.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

void ProfilingBackend::matmul(float* out, const float* in, const WeightMatrix& w, int64_t tokens) {
  timed(matmul_key(w), [&] { inner_.matmul(out, in, w, tokens); });
}

void ProfilingBackend::matmuls(const float* in, int64_t tokens, std::span<const MatmulTarget> targets) {
  std::string key = "matmuls";
  for (const MatmulTarget& t : targets) key += fmt::format(" {} {}x{}", dtype_name(t.w.dtype), t.w.rows, t.w.cols);
  timed(key, [&] { inner_.matmuls(in, tokens, targets); });
}

void ProfilingBackend::rmsnorm(float* out, const float* x, const float* weight, int64_t tokens, int64_t dim, float eps) {
  timed("rmsnorm", [&] { inner_.rmsnorm(out, x, weight, tokens, dim, eps); });
}

void ProfilingBackend::rope(float* x, const float* cos, const float* sin, int64_t tokens, int64_t heads,
                            int64_t head_dim, RopeLayout layout) {
  timed("rope", [&] { inner_.rope(x, cos, sin, tokens, heads, head_dim, layout); });
}

void ProfilingBackend::silu_mul(float* out, const float* gate, const float* up, int64_t count) {
  timed("silu_mul", [&] { inner_.silu_mul(out, gate, up, count); });
}

void ProfilingBackend::kv_write(const KvCacheLayout& cache, const float* keys, const float* values,
                                const int64_t* slots, int64_t tokens) {
  timed("kv_write", [&] { inner_.kv_write(cache, keys, values, slots, tokens); });
}

void ProfilingBackend::attention(float* out, const float* queries, const AttentionQuery* query_info, int64_t tokens,
                                 const KvCacheLayout& cache, const AttentionShape& shape) {
  timed(fmt::format("attention (kv {})", dtype_name(cache.dtype)),
        [&] { inner_.attention(out, queries, query_info, tokens, cache, shape); });
}

void ProfilingBackend::embed(float* out, const WeightMatrix& table, const int32_t* ids, int64_t tokens) {
  timed("embed", [&] { inner_.embed(out, table, ids, tokens); });
}

void ProfilingBackend::add(float* x, const float* y, int64_t count) {
  timed("add", [&] { inner_.add(x, y, count); });
}

void ProfilingBackend::add_bias(float* x, const float* bias, int64_t tokens, int64_t dim) {
  timed("add_bias", [&] { inner_.add_bias(x, bias, tokens, dim); });
}

std::string ProfilingBackend::table() const {
  std::vector<std::pair<std::string, Entry>> rows(entries_.begin(), entries_.end());
  std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.second.seconds > b.second.seconds; });
  double total = 0;
  for (const auto& [key, entry] : rows) total += entry.seconds;
  std::string out = "| op | calls | ms | µs per call | share |\n|---|---:|---:|---:|---:|\n";
  for (const auto& [key, entry] : rows)
    out += fmt::format("| {} | {} | {:.2f} | {:.1f} | {:.1f} % |\n", key, entry.calls, entry.seconds * 1e3,
                       entry.seconds * 1e6 / static_cast<double>(entry.calls), 100.0 * entry.seconds / total);
  out += fmt::format("| all ops | | {:.2f} | | |\n", total * 1e3);
  return out;
}

}  // namespace retort
