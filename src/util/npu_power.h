#pragma once
// Energy of Ascend NPUs from `npu-smi info -t power -i ID`, the driver's command-line tool. It
// reports each chip's present draw in watts (a "Power Dissipation(W)" line; some versions say
// "Real-time Power(W)"), not an energy counter, so a thread of this sampler's own runs it for
// every device at a fixed interval and integrates the draw over time (trapezoids between samples,
// the last sample held up to the moment of reading). Devices whose first read gives no figure are
// left out. The npu-smi path is a parameter so tests can supply a script of their own.
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace retort {

// The watts on the power line of npu-smi's output; nullopt when it has none.
std::optional<double> parse_npu_smi_power(const std::string& output);

// Where the NPUs' power comes from: npu-smi and the device ids it is asked about.
struct NpuPowerSource {
  std::string npu_smi;  // empty: no NPUs
  std::vector<int> device_ids;
};
// npu-smi and the /dev/davinciN devices probe_npu() finds on this machine (none on most).
NpuPowerSource present_npus();

class NpuPowerSampler {
 public:
  explicit NpuPowerSampler(NpuPowerSource source, std::chrono::milliseconds interval = std::chrono::seconds(1));
  ~NpuPowerSampler();
  NpuPowerSampler(const NpuPowerSampler&) = delete;
  NpuPowerSampler& operator=(const NpuPowerSampler&) = delete;

  size_t device_count() const { return devices_.size(); }
  const std::string& device_name(size_t index) const { return devices_[index].name; }  // "npu0", ...
  // Why there is no NPU figure (empty when there is one).
  const std::string& why_not() const { return why_not_; }
  // Joules device `index` used since the sampler started. Thread-safe.
  double joules(size_t index);

 private:
  using Clock = std::chrono::steady_clock;
  struct Device {
    int id;
    std::string name;
    double watts = 0, joules = 0;
    Clock::time_point sampled;
  };
  std::optional<double> read_watts(int id) const;
  void sample_until_stopped();

  NpuPowerSource source_;
  std::chrono::milliseconds interval_;
  std::vector<Device> devices_;
  std::string why_not_;
  std::mutex mutex_;
  std::condition_variable stop_signal_;
  bool stopping_ = false;
  std::thread sampler_;
};

}  // namespace retort
