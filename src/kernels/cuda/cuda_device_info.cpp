// query_cuda() through the CUDA runtime API. Plain C++ (no kernels), so it builds with the host
// compiler; compiled only when CMake found the toolkit. Every call may fail on a machine without
// a driver or GPU: each failure becomes a CudaProblem, never an exception or an abort.
#include <cuda_runtime_api.h>

#include <string>

#include "kernels/device_info.h"

namespace retort {
namespace {

std::string describe(cudaError_t status) {
  return std::string(cudaGetErrorName(status)) + ": " + cudaGetErrorString(status);
}

CudaProblem classify(cudaError_t status) {
  // A missing libcuda.so and one older than the runtime both read as "insufficient driver";
  // the report's driver_version (0 when there is none) lets the caller tell them apart.
  if (status == cudaErrorInsufficientDriver) return CudaProblem::NoDriver;
  if (status == cudaErrorNoDevice) return CudaProblem::NoDevice;
  return CudaProblem::QueryFailed;
}

CudaDeviceInfo describe_device(int index, const cudaDeviceProp& properties) {
  CudaDeviceInfo device;
  device.index = index;
  device.name = properties.name;
  device.total_memory_bytes = properties.totalGlobalMem;
  device.compute_major = properties.major;
  device.compute_minor = properties.minor;
  device.multiprocessors = properties.multiProcessorCount;
  char bus_id[32] = {};
  if (cudaDeviceGetPCIBusId(bus_id, sizeof(bus_id), index) == cudaSuccess) device.pci_bus_id = bus_id;
  return device;
}

}  // namespace

CudaReport query_cuda() {
  CudaReport report;
  report.compiled_in = true;
  // Both calls succeed without a driver (the driver version is then 0).
  cudaDriverGetVersion(&report.driver_version);
  cudaRuntimeGetVersion(&report.runtime_version);

  int device_count = 0;
  cudaError_t status = cudaGetDeviceCount(&device_count);
  if (status != cudaSuccess) {
    report.problem = classify(status);
    report.error = describe(status);
    cudaGetLastError();  // clear the sticky error so later CUDA users start clean
    return report;
  }
  for (int index = 0; index < device_count; ++index) {
    cudaDeviceProp properties{};
    status = cudaGetDeviceProperties(&properties, index);
    if (status != cudaSuccess) {
      report.error = "device " + std::to_string(index) + ": " + describe(status);
      continue;
    }
    report.devices.push_back(describe_device(index, properties));
  }
  if (report.devices.empty()) report.problem = report.error.empty() ? CudaProblem::NoDevice : CudaProblem::QueryFailed;
  return report;
}

}  // namespace retort
