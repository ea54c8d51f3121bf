#include "util/nvml_energy.h"

#include <dlfcn.h>

#include <fmt/format.h>

namespace retort {

namespace {
constexpr int kNvmlSuccess = 0;  // NVML_SUCCESS; every other nvmlReturn_t is an error
}

NvmlEnergy::NvmlEnergy(const std::string& library) {
  if (library.empty()) {
    why_not_ = "NVML not consulted";
    return;
  }
  library_ = ::dlopen(library.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (library_ == nullptr) {
    const char* reason = ::dlerror();
    why_not_ = fmt::format("no NVIDIA driver ({})", reason != nullptr ? reason : library);
    return;
  }
  auto init = reinterpret_cast<int (*)()>(::dlsym(library_, "nvmlInit_v2"));
  auto count = reinterpret_cast<int (*)(unsigned*)>(::dlsym(library_, "nvmlDeviceGetCount_v2"));
  auto handle_of = reinterpret_cast<int (*)(unsigned, void**)>(::dlsym(library_, "nvmlDeviceGetHandleByIndex_v2"));
  energy_ = reinterpret_cast<EnergyFn>(::dlsym(library_, "nvmlDeviceGetTotalEnergyConsumption"));
  shutdown_ = reinterpret_cast<int (*)()>(::dlsym(library_, "nvmlShutdown"));
  if (init == nullptr || count == nullptr || handle_of == nullptr || energy_ == nullptr || shutdown_ == nullptr) {
    why_not_ = fmt::format("{} lacks the NVML energy functions (a driver older than Volta's?)", library);
    shutdown_ = nullptr;
    return;
  }
  if (const int code = init(); code != kNvmlSuccess) {
    why_not_ = fmt::format("NVML did not start (nvmlInit_v2 returned {}; is the NVIDIA driver loaded?)", code);
    shutdown_ = nullptr;
    return;
  }
  unsigned devices = 0;
  if (count(&devices) != kNvmlSuccess) devices = 0;
  for (unsigned i = 0; i < devices; ++i) {
    void* handle = nullptr;
    unsigned long long millijoules = 0;
    if (handle_of(i, &handle) != kNvmlSuccess || energy_(handle, &millijoules) != kNvmlSuccess) continue;
    devices_.push_back({handle, fmt::format("gpu{}", i)});
  }
  if (devices_.empty())
    why_not_ = devices == 0 ? "NVML sees no GPU" : "no GPU reports its energy through NVML (Volta or later does)";
}

NvmlEnergy::~NvmlEnergy() {
  if (shutdown_ != nullptr) shutdown_();
  if (library_ != nullptr) ::dlclose(library_);
}

bool NvmlEnergy::read_millijoules(size_t index, uint64_t& out) const {
  unsigned long long millijoules = 0;
  if (energy_(devices_[index].handle, &millijoules) != kNvmlSuccess) return false;
  out = millijoules;
  return true;
}

}  // namespace retort
