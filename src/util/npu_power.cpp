#include "util/npu_power.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include <fmt/format.h>

#include "util/child_process.h"
#include "util/npu_probe.h"

namespace retort {

std::optional<double> parse_npu_smi_power(const std::string& output) {
  // "Power Dissipation(W)           : 67.9" or "Real-time Power(W) : 67.9".
  static const std::regex power_line(R"(Power[^:\n]*\(W\)\s*:\s*([0-9]+(\.[0-9]+)?))");
  std::smatch match;
  if (!std::regex_search(output, match, power_line)) return std::nullopt;
  return std::strtod(match[1].str().c_str(), nullptr);
}

NpuPowerSource present_npus() {
  const NpuReport report = probe_npu();
  NpuPowerSource source;
  if (report.npu_smi_path.empty()) return source;
  source.npu_smi = report.npu_smi_path;
  for (const std::string& node : report.device_nodes)  // "/dev/davinci3" -> 3
    source.device_ids.push_back(std::atoi(node.c_str() + node.find_last_not_of("0123456789") + 1));
  return source;
}

NpuPowerSampler::NpuPowerSampler(NpuPowerSource source, std::chrono::milliseconds interval)
    : source_(std::move(source)), interval_(interval) {
  if (source_.npu_smi.empty()) {
    why_not_ = "no Ascend npu-smi";
    return;
  }
  for (int id : source_.device_ids) {
    if (auto watts = read_watts(id)) devices_.push_back({id, fmt::format("npu{}", id), *watts, 0, Clock::now()});
  }
  if (devices_.empty()) {
    why_not_ = fmt::format("{} gave no power figure for any of {} NPU(s)", source_.npu_smi, source_.device_ids.size());
    return;
  }
  sampler_ = std::thread([this] { sample_until_stopped(); });
}

NpuPowerSampler::~NpuPowerSampler() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  stop_signal_.notify_all();
  if (sampler_.joinable()) sampler_.join();
}

// npu-smi's output goes through a file of this process's own (ChildProcess logs to a path).
std::optional<double> NpuPowerSampler::read_watts(int id) const {
  const std::string log = (std::filesystem::temp_directory_path() /
                           fmt::format("retort-npu-smi-{}-{}.txt", getpid(), id)).string();
  std::string output;
  try {
    ChildProcess child({source_.npu_smi, "info", "-t", "power", "-i", std::to_string(id)}, log);
    const auto deadline = Clock::now() + std::chrono::seconds(5);
    std::optional<std::string> ended;
    while (!(ended = child.exited()) && Clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    if (!ended) child.stop(std::chrono::milliseconds(100));
    std::stringstream text;
    text << std::ifstream(log).rdbuf();
    output = text.str();
  } catch (const std::exception&) {
    output.clear();  // could not start: no figure this time
  }
  std::error_code ignored;
  std::filesystem::remove(log, ignored);
  return parse_npu_smi_power(output);
}

void NpuPowerSampler::sample_until_stopped() {
  std::unique_lock lock(mutex_);
  while (!stop_signal_.wait_for(lock, interval_, [this] { return stopping_; })) {
    for (Device& device : devices_) {
      lock.unlock();
      const std::optional<double> watts = read_watts(device.id);
      lock.lock();
      const Clock::time_point now = Clock::now();
      const double seconds = std::chrono::duration<double>(now - device.sampled).count();
      const double now_watts = watts.value_or(device.watts);  // a failed read holds the last figure
      device.joules += 0.5 * (device.watts + now_watts) * seconds;
      device.watts = now_watts;
      device.sampled = now;
    }
  }
}

double NpuPowerSampler::joules(size_t index) {
  std::lock_guard lock(mutex_);
  const Device& device = devices_[index];
  return device.joules + device.watts * std::chrono::duration<double>(Clock::now() - device.sampled).count();
}

}  // namespace retort
