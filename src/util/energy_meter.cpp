#include "util/energy_meter.h"

#include <algorithm>
#include <filesystem>
#include <fstream>

namespace retort {

namespace fs = std::filesystem;

namespace {

bool read_text(const fs::path& path, std::string& out) {
  std::ifstream in(path);
  if (!in || !std::getline(in, out)) return false;
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return true;
}

bool read_number(const fs::path& path, uint64_t& out) {
  std::string text;
  if (!read_text(path, text) || text.empty() || !std::all_of(text.begin(), text.end(), ::isdigit)) return false;
  try {
    out = std::stoull(text);
  } catch (...) {
    return false;
  }
  return true;
}

}  // namespace

EnergyMeter::EnergyMeter(std::string root, const std::string& nvml_library, NpuPowerSource npus)
    : nvml_(nvml_library), npus_(std::move(npus)) {
  add_rapl_domains(root);
  add_gpus();
  add_npus();
  if (domains_.empty()) why_not_ += "; " + nvml_.why_not() + "; " + npus_.why_not();
  else why_not_.clear();
}

void EnergyMeter::add_rapl_domains(const std::string& root) {
  std::error_code error;
  std::vector<fs::path> zones;
  for (const auto& entry : fs::directory_iterator(root, error)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("intel-rapl:", 0) == 0) zones.push_back(entry.path());
  }
  std::sort(zones.begin(), zones.end());
  for (const fs::path& zone : zones) {
    const std::string id = zone.filename().string();
    const bool package = std::count(id.begin(), id.end(), ':') == 1;
    Domain domain;
    if (!read_text(zone / "name", domain.name)) continue;
    if (!package && domain.name != "dram") continue;  // core/uncore are inside their package's figure
    domain.energy_path = (zone / "energy_uj").string();
    if (!read_number(zone / "max_energy_range_uj", domain.max_range) || !read_number(domain.energy_path, domain.last))
      continue;  // unreadable (root-only on recent kernels): left out
    domains_.push_back(domain);
  }
  if (domains_.empty()) {
    why_not_ = zones.empty() ? "no RAPL energy counters under " + root + " (most VMs expose none)"
                             : "the RAPL energy counters under " + root + " are not readable (they are root-only on recent kernels)";
  }
}

// NVML's counters are 64-bit millijoules since the driver loaded: they do not wrap in practice.
void EnergyMeter::add_gpus() {
  for (size_t i = 0; i < nvml_.device_count(); ++i) {
    Domain domain;
    domain.name = nvml_.device_name(i);
    domain.gpu_index = i;
    domain.max_range = UINT64_MAX;
    if (read_microjoules(domain, domain.last)) domains_.push_back(domain);
  }
}

// The NPUs' joules are integrated by their sampler from npu-smi's watts: they only grow.
void EnergyMeter::add_npus() {
  for (size_t i = 0; i < npus_.device_count(); ++i) {
    Domain domain;
    domain.name = npus_.device_name(i);
    domain.npu_index = static_cast<int>(i);
    domain.max_range = UINT64_MAX;
    if (read_microjoules(domain, domain.last)) domains_.push_back(domain);
  }
}

bool EnergyMeter::read_microjoules(const Domain& domain, uint64_t& out) {
  if (!domain.energy_path.empty()) return read_number(domain.energy_path, out);
  if (domain.npu_index >= 0) {
    out = static_cast<uint64_t>(npus_.joules(static_cast<size_t>(domain.npu_index)) * 1e6);
    return true;
  }
  uint64_t millijoules = 0;
  if (!nvml_.read_millijoules(domain.gpu_index, millijoules)) return false;
  out = millijoules * 1000;
  return true;
}

double EnergyMeter::joules() {
  std::lock_guard lock(mutex_);
  double total = 0;
  for (Domain& d : domains_) {
    uint64_t now = 0;
    if (read_microjoules(d, now)) {
      const uint64_t delta = now >= d.last ? now - d.last : now + (d.max_range - d.last);
      d.total_uj += double(delta);
      d.last = now;
    }
    total += d.total_uj;
  }
  return total * 1e-6;
}

std::vector<std::string> EnergyMeter::domain_names() const {
  std::vector<std::string> names;
  for (const Domain& d : domains_) names.push_back(d.name);
  return names;
}

}  // namespace retort
