#pragma once
// What accelerators this process can use, for `retort doctor` and for choosing a backend.
// The declarations are always available; query_cuda() is implemented by kernels/cuda/ when the
// CUDA toolkit was found at configure time and by kernels/cpu/ (reporting "not compiled in")
// otherwise, so callers never need #ifdefs.
#include <cstdint>
#include <string>
#include <vector>

namespace retort {

struct CudaDeviceInfo {
  int index = 0;
  std::string name;
  uint64_t total_memory_bytes = 0;
  int compute_major = 0;  // compute capability, e.g. 9.0 for H100
  int compute_minor = 0;
  int multiprocessors = 0;
  std::string pci_bus_id;  // "0000:3b:00.0"
};

enum class CudaProblem {
  None,           // at least one device is usable
  NotCompiledIn,  // this binary was built without the CUDA backend
  NoDriver,       // no NVIDIA driver, or one older than the CUDA runtime retort was built with
  NoDevice,       // the driver works but sees no GPU (none installed, or hidden from the container)
  QueryFailed,    // any other CUDA runtime error
};

struct CudaReport {
  bool compiled_in = false;
  std::string why_not;      // why the backend is not compiled in
  int driver_version = 0;   // CUDA version the driver supports, as 1000*major + 10*minor; 0 = none
  int runtime_version = 0;  // CUDA runtime retort is linked against, same encoding
  std::vector<CudaDeviceInfo> devices;
  CudaProblem problem = CudaProblem::None;
  std::string error;  // the CUDA runtime's own words when a query failed
};

CudaReport query_cuda();

// 12040 -> "12.4"; 0 -> "none".
std::string cuda_version_string(int encoded_version);

}  // namespace retort
