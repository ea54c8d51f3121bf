#pragma once
// Energy from Linux powercap (RAPL) counters: each CPU package domain (intel-rapl:N, also what AMD
// CPUs expose there) and each DRAM subdomain (intel-rapl:N:M named "dram"); the packages' core and
// uncore subdomains are inside the package figure and are not added again. Counters are in µJ and
// wrap at max_energy_range_uj, which is allowed for as long as they are read at least once per
// wrap (minutes at full power). Machines without powercap (most VMs, this one) say so instead of
// giving a number. The root is a parameter so tests can lay out a counter tree of their own.
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

namespace retort {

class EnergyMeter {
 public:
  explicit EnergyMeter(std::string root = "/sys/class/powercap");
  bool available() const { return !domains_.empty(); }
  // Why no figure is given (empty when available), e.g. "no RAPL energy counters under /sys/class/powercap".
  const std::string& why_not() const { return why_not_; }
  // Joules used since construction, summed over the domains. Thread-safe.
  double joules();
  std::vector<std::string> domain_names() const;

 private:
  struct Domain {
    std::string name, energy_path;
    uint64_t max_range = 0, last = 0;
    double total_uj = 0;
  };
  std::mutex mutex_;
  std::vector<Domain> domains_;
  std::string why_not_;
};

}  // namespace retort
