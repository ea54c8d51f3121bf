// A stand-in for the NVIDIA driver's libnvidia-ml.so.1, for tests of util/nvml_energy on machines
// without a GPU: the five NVML functions NvmlEnergy calls, with the driver's C signatures. Its GPUs
// and their energy counters come from the environment variable FAKE_NVML_MILLIJOULES, a comma list
// read at every call ("1000,2500": two GPUs; "x" for a GPU whose energy read fails). Unset: no GPU.
#include <cstdlib>
#include <string>
#include <vector>

namespace {
constexpr int kSuccess = 0, kNotSupported = 3, kInvalidArgument = 2;
bool initialised = false;

std::vector<std::string> counters() {
  std::vector<std::string> out;
  const char* text = std::getenv("FAKE_NVML_MILLIJOULES");
  if (text == nullptr || *text == '\0') return out;
  std::string list = text;
  for (size_t start = 0;;) {
    const size_t comma = list.find(',', start);
    out.push_back(list.substr(start, comma - start));
    if (comma == std::string::npos) return out;
    start = comma + 1;
  }
}
}  // namespace

extern "C" {
int nvmlInit_v2() {
  initialised = true;
  return kSuccess;
}
int nvmlShutdown() {
  initialised = false;
  return kSuccess;
}
int nvmlDeviceGetCount_v2(unsigned* count) {
  *count = static_cast<unsigned>(counters().size());
  return initialised ? kSuccess : 1;
}
// A device handle is its index + 1 (NVML's handles are opaque pointers).
int nvmlDeviceGetHandleByIndex_v2(unsigned index, void** device) {
  if (index >= counters().size()) return kInvalidArgument;
  *device = reinterpret_cast<void*>(static_cast<uintptr_t>(index) + 1);
  return kSuccess;
}
int nvmlDeviceGetTotalEnergyConsumption(void* device, unsigned long long* millijoules) {
  const auto index = reinterpret_cast<uintptr_t>(device) - 1;
  const std::vector<std::string> all = counters();
  if (index >= all.size() || all[index] == "x") return kNotSupported;
  *millijoules = std::strtoull(all[index].c_str(), nullptr, 10);
  return kSuccess;
}
}
