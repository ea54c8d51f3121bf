#pragma once
#include <algorithm>
#include <cstddef>

namespace retort::train {

// The ranks of a data-parallel run as the step loop sees them (dist/data_parallel.h implements it
// over MPI; train/ knows nothing of the transport). The default is one process: every sum is the
// identity, so a run without mpirun is exactly the single-process run.
class RankGroup {
 public:
  virtual ~RankGroup() = default;
  virtual int rank() const { return 0; }
  virtual int ranks() const { return 1; }
  // Element-wise sums over ranks, in place, the same result on every rank.
  virtual void sum(float* values, size_t count) {}
  virtual void sum(double* values, size_t count) {}
  virtual void barrier() {}
  // Whether sum(float*) may be called from another thread than the one that joined the ranks (never
  // two at once): the gradient buckets' communication thread needs it.
  virtual bool sums_from_any_thread() const { return true; }

  // ZeRO-1 (optimizer state sharded): a flat buffer of `count` values is cut into shards of
  // `shard` values, rank r owning [r·shard, (r+1)·shard) ∩ [0, count) (see ShardRange).
  // Sums over ranks at least this rank's shard of `values`, exactly as sum() would (the rest of
  // the buffer may be left unsummed: a transport may reduce-scatter instead of allreduce).
  virtual void sum_own_shard(float* values, size_t count, size_t shard) { sum(values, count); }
  // Each rank's shard of `values` (which that rank updated) copied to every rank.
  virtual void share_shards(float* values, size_t count, size_t shard) {}
  // Rank 0 receives every rank's `shard` values, rank r's at r·shard of `out` (ranks()·shard values;
  // left untouched on the other ranks).
  virtual void gather_to_first(const float* mine, size_t shard, float* out) { std::copy_n(mine, shard, out); }
  // Rank 0 writes checkpoints, logs and the report; the others only compute.
  bool writes() const { return rank() == 0; }
};
RankGroup& single_process();

// This rank's part [begin, end) of a flat buffer of `count` values cut in shards of `shard`.
struct ShardRange {
  size_t begin = 0, end = 0;
  static ShardRange of(int rank, size_t count, size_t shard) {
    const size_t begin = std::min(count, size_t(rank) * shard);
    return {begin, std::min(count, begin + shard)};
  }
  size_t size() const { return end - begin; }
};

}  // namespace retort::train
