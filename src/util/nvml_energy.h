#pragma once
// Energy of NVIDIA GPUs from NVML, the driver's management library (libnvidia-ml.so.1). It is opened
// at run time, like the driver it belongs to, so no build needs it and a machine without it only
// loses the GPU figure. nvmlDeviceGetTotalEnergyConsumption counts millijoules since the driver
// loaded (Volta and later); devices that cannot report it are left out. The library's name is a
// parameter so tests can load a library of their own with the same five functions.
#include <cstdint>
#include <string>
#include <vector>

namespace retort {

class NvmlEnergy {
 public:
  explicit NvmlEnergy(const std::string& library = "libnvidia-ml.so.1");
  ~NvmlEnergy();
  NvmlEnergy(const NvmlEnergy&) = delete;
  NvmlEnergy& operator=(const NvmlEnergy&) = delete;

  bool available() const { return !devices_.empty(); }
  // Why there is no GPU figure (empty when available), e.g. "no NVIDIA driver (libnvidia-ml.so.1: ...)".
  const std::string& why_not() const { return why_not_; }
  size_t device_count() const { return devices_.size(); }
  // Device `index`'s counter (the NVML index it had is in its name: "gpu3"); false when the read fails.
  bool read_millijoules(size_t index, uint64_t& out) const;
  const std::string& device_name(size_t index) const { return devices_[index].name; }

 private:
  using EnergyFn = int (*)(void* device, unsigned long long* millijoules);
  struct Device {
    void* handle;
    std::string name;
  };
  void* library_ = nullptr;
  EnergyFn energy_ = nullptr;
  int (*shutdown_)() = nullptr;
  std::vector<Device> devices_;
  std::string why_not_;
};

}  // namespace retort
