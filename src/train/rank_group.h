#pragma once
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
  // Rank 0 writes checkpoints, logs and the report; the others only compute.
  bool writes() const { return rank() == 0; }
};
RankGroup& single_process();

}  // namespace retort::train
