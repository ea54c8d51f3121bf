#pragma once
// The machine's energy from the counters it exposes: Linux powercap (RAPL) for each CPU package
// domain (intel-rapl:N, also what AMD CPUs expose there) and each DRAM subdomain (intel-rapl:N:M
// named "dram"; the packages' core and uncore subdomains are inside the package figure and are not
// added again), NVML for each NVIDIA GPU (util/nvml_energy.h) and npu-smi's power for each Ascend
// NPU, integrated over time (util/npu_power.h). RAPL counters are in µJ and wrap
// at max_energy_range_uj, which is allowed for as long as they are read at least once per wrap
// (minutes at full power). Machines without any (most VMs, this one) say so instead of giving a
// number. The powercap root, the NVML library and npu-smi are parameters so tests can supply their own.
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "util/npu_power.h"
#include "util/nvml_energy.h"

namespace retort {

class EnergyMeter {
 public:
  // nvml_library "" leaves GPUs out, an npus without npu-smi the NPUs.
  explicit EnergyMeter(std::string root = "/sys/class/powercap", const std::string& nvml_library = "libnvidia-ml.so.1",
                       NpuPowerSource npus = present_npus());
  bool available() const { return !domains_.empty(); }
  // Why no figure is given (empty when available), e.g. "no RAPL energy counters under
  // /sys/class/powercap (...); no NVIDIA driver (...)".
  const std::string& why_not() const { return why_not_; }
  // Joules used since construction, summed over the domains. Thread-safe.
  double joules();
  std::vector<std::string> domain_names() const;

 private:
  struct Domain {
    std::string name, energy_path;  // energy_path empty: NVML device gpu_index, or NPU npu_index
    size_t gpu_index = 0;
    int npu_index = -1;
    uint64_t max_range = 0, last = 0;
    double total_uj = 0;
  };
  void add_rapl_domains(const std::string& root);
  void add_gpus();
  void add_npus();
  bool read_microjoules(const Domain& domain, uint64_t& out);

  std::mutex mutex_;
  NvmlEnergy nvml_;
  NpuPowerSampler npus_;
  std::vector<Domain> domains_;
  std::string why_not_;
};

}  // namespace retort
