// The parts of kernels/device_info.h that do not need the CUDA toolkit: version formatting, and
// query_cuda() for binaries built without it (says so, and why, instead of failing).
#include "build_info.h"
#include "kernels/device_info.h"

namespace retort {

std::string cuda_version_string(int encoded_version) {
  if (encoded_version <= 0) return "none";
  return std::to_string(encoded_version / 1000) + "." + std::to_string(encoded_version % 1000 / 10);
}

#ifndef RETORT_HAVE_CUDA
CudaReport query_cuda() {
  CudaReport report;
  report.compiled_in = false;
  report.why_not = RETORT_CUDA_WHY_NOT;
  if (report.why_not.empty()) report.why_not = "built without RETORT_HAVE_CUDA";
  report.problem = CudaProblem::NotCompiledIn;
  return report;
}
#endif

}  // namespace retort
