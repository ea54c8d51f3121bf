// The MPI transport (Open MPI from Debian). The only file that includes mpi.h: without MPI at
// configure time it compiles to the "not compiled in" answers below.
#include <cstdlib>
#include <limits>
#include <memory>
#include <string>

#include "dist/communicator.h"
#include "util/error.h"

#if RETORT_HAVE_MPI
// C bindings only: the C++ ones are deprecated and warn under -Wextra.
#define OMPI_SKIP_MPICXX 1
#include <mpi.h>
#endif

namespace retort::dist {

#if RETORT_HAVE_MPI

namespace {

int thread_level = MPI_THREAD_SINGLE;  // what MPI_Init_thread provided

// Collectives return their error instead of aborting the job, so the message says which call failed.
void check(int code, const char* call) {
  if (code == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(code, text, &length);
  fail(ErrorKind::Io, "{} failed: {} (another rank may have exited; see mpirun's message for which)", call,
       std::string(text, size_t(length)));
}

// Counts past INT_MAX would need MPI's large-count calls; a shard of 2^31 floats is 8 GiB per rank.
int as_count(size_t n) {
  require(n <= size_t(std::numeric_limits<int>::max()), ErrorKind::OutOfRange,
          "{} values in one collective is past MPI's int count; use more ranks or a smaller model", n);
  return int(n);
}

class MpiCommunicator final : public Communicator {
 public:
  // owns_mpi: the world communicator initialises MPI and finalises it when destroyed.
  MpiCommunicator(MPI_Comm comm, bool owns_mpi) : comm_(comm), owns_mpi_(owns_mpi) {
    MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
  }
  ~MpiCommunicator() override {
    if (owns_mpi_) {
      MPI_Finalize();
    } else {
      MPI_Comm_free(&comm_);
    }
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string backend() const override { return "mpi"; }
  bool serialized_threads() const override { return thread_level >= MPI_THREAD_SERIALIZED; }

  void all_gather_bytes(const void* input, void* output, size_t bytes) override {
    check(MPI_Allgather(input, as_count(bytes), MPI_BYTE, output, as_count(bytes), MPI_BYTE, comm_), "MPI_Allgather");
  }
  void gather_bytes(const void* input, void* output, size_t bytes, int root) override {
    check(MPI_Gather(input, as_count(bytes), MPI_BYTE, output, as_count(bytes), MPI_BYTE, root, comm_), "MPI_Gather");
  }
  void broadcast(void* data, size_t bytes, int root) override {
    check(MPI_Bcast(data, as_count(bytes), MPI_BYTE, root, comm_), "MPI_Bcast");
  }
  int64_t sum(int64_t value) override {
    int64_t total = 0;
    check(MPI_Allreduce(&value, &total, 1, MPI_INT64_T, MPI_SUM, comm_), "MPI_Allreduce");
    return total;
  }
  void barrier() override { check(MPI_Barrier(comm_), "MPI_Barrier"); }
  std::unique_ptr<Communicator> split(int color, int key) override {
    MPI_Comm part;
    check(MPI_Comm_split(comm_, color, key, &part), "MPI_Comm_split");
    return std::make_unique<MpiCommunicator>(part, false);
  }
  std::unique_ptr<Communicator> split_shared() override {
    MPI_Comm part;
    check(MPI_Comm_split_type(comm_, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &part), "MPI_Comm_split_type");
    return std::make_unique<MpiCommunicator>(part, false);
  }

 protected:
  void all_to_all(const float* input, float* output, size_t shard) override {
    check(MPI_Alltoall(input, as_count(shard), MPI_FLOAT, output, as_count(shard), MPI_FLOAT, comm_), "MPI_Alltoall");
  }

 private:
  MPI_Comm comm_;
  bool owns_mpi_;
  int rank_ = 0, size_ = 1;
};

}  // namespace

std::unique_ptr<Communicator> make_mpi_world() {
  // One thread at a time calls MPI: the main thread, or the gradient buckets' communication thread
  // while the main thread runs the backward (train/gradient_buckets.h); never the pool's workers.
  check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &thread_level), "MPI_Init_thread");
  return std::make_unique<MpiCommunicator>(MPI_COMM_WORLD, true);
}

void abort_all_ranks(int exit_code) {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (initialized && !finalized) MPI_Abort(MPI_COMM_WORLD, exit_code);
}

bool mpi_compiled_in() { return true; }
std::string mpi_why_not() { return ""; }

#else

std::unique_ptr<Communicator> make_mpi_world() {
  fail(ErrorKind::Unsupported, "this retort was built without MPI ({})", mpi_why_not());
}
void abort_all_ranks(int) {}
bool mpi_compiled_in() { return false; }
std::string mpi_why_not() { return RETORT_MPI_WHY_NOT; }

#endif

}  // namespace retort::dist
