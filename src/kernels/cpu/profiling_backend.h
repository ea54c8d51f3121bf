#pragma once
// A Backend that forwards every op to another and adds up the wall time of each kind of call
// (matmuls keyed by weight type and shape), for a per-op profile of a decode step or a prefill:
// `bench_inference --profile`. Each op is timed from the caller's side, so a parallel op's time is
// that of its slowest thread, which is what the forward pass waits for.
#include <map>
#include <string>

#include "kernels/backend.h"

namespace retort {

class ProfilingBackend final : public Backend {
 public:
  struct Entry {
    int64_t calls = 0;
    double seconds = 0;
  };
  explicit ProfilingBackend(Backend& inner) : inner_(inner) {}
  std::string name() const override { return inner_.name(); }

  void matmul(float* out, const float* in, const WeightMatrix& w, int64_t tokens) override;
  void matmuls(const float* in, int64_t tokens, std::span<const MatmulTarget> targets) override;
  bool repack(WeightMatrix& w, void* bytes) override { return inner_.repack(w, bytes); }
  void rmsnorm(float* out, const float* x, const float* weight, int64_t tokens, int64_t dim, float eps) override;
  void rope(float* x, const float* cos, const float* sin, int64_t tokens, int64_t heads, int64_t head_dim,
            RopeLayout layout) override;
  void silu_mul(float* out, const float* gate, const float* up, int64_t count) override;
  void kv_write(const KvCacheLayout& cache, const float* keys, const float* values, const int64_t* slots,
                int64_t tokens) override;
  void attention(float* out, const float* queries, const AttentionQuery* query_info, int64_t tokens,
                 const KvCacheLayout& cache, const AttentionShape& shape) override;
  void embed(float* out, const WeightMatrix& table, const int32_t* ids, int64_t tokens) override;
  void add(float* x, const float* y, int64_t count) override;
  void add_bias(float* x, const float* bias, int64_t tokens, int64_t dim) override;

  const std::map<std::string, Entry>& entries() const { return entries_; }
  void reset() { entries_.clear(); }
  // A Markdown table of the entries, most time first, with each one's share of the total.
  std::string table() const;

 private:
  template <class Op>
  void timed(const std::string& key, Op&& op);
  Backend& inner_;
  std::map<std::string, Entry> entries_;
};

}  // namespace retort
