#include "util/npu_probe.h"

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "util/system_info.h"

namespace retort {
namespace {

namespace fs = std::filesystem;

// A path as the user would type it: "/dev/davinci0" under the real root, the full path under a
// test root.
std::string shown(const fs::path& root, const std::string& absolute) {
  return (root / absolute.substr(1)).lexically_normal().string();
}

bool path_exists(const fs::path& path) {
  std::error_code error;
  return fs::exists(path, error);
}

// davinci0, davinci1, ... (not davinci_manager), sorted by index.
std::vector<std::string> find_device_nodes(const fs::path& root) {
  std::vector<std::pair<int, std::string>> nodes;
  std::error_code error;
  for (const auto& entry : fs::directory_iterator(root / "dev", error)) {
    std::string name = entry.path().filename().string();
    const std::string prefix = "davinci";
    if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) continue;
    std::string digits = name.substr(prefix.size());
    if (digits.find_first_not_of("0123456789") != std::string::npos || digits.size() > 6) continue;
    nodes.emplace_back(std::stoi(digits), shown(root, "/dev/" + name));
  }
  std::sort(nodes.begin(), nodes.end());
  std::vector<std::string> paths;
  for (auto& node : nodes) paths.push_back(std::move(node.second));
  return paths;
}

void find_npu_smi(const fs::path& root, NpuReport& report) {
  const char* path_variable = std::getenv("PATH");
  std::istringstream directories(path_variable != nullptr ? path_variable : "");
  std::string directory;
  while (std::getline(directories, directory, ':')) {
    if (directory.empty() || directory[0] != '/') continue;
    if (path_exists(root / directory.substr(1) / "npu-smi")) {
      report.npu_smi_path = shown(root, directory + "/npu-smi");
      report.npu_smi_on_path = true;
      return;
    }
  }
  // Where the Ascend driver package installs it; often absent from a container's PATH.
  for (const char* candidate : {"/usr/local/sbin/npu-smi", "/usr/local/bin/npu-smi"}) {
    if (path_exists(root / (candidate + 1))) {
      report.npu_smi_path = shown(root, candidate);
      return;
    }
  }
}

// Device ids of the Ascend 310, 310P, 910 and 910B; a processing-accelerator class (0x12) from
// Huawei counts too, so a newer chip is not missed.
bool is_ascend(const PciDevice& device) {
  constexpr uint32_t kHuawei = 0x19e5;
  if (device.vendor != kHuawei) return false;
  const uint32_t known_ids[] = {0xd100, 0xd500, 0xd801, 0xd802, 0xd803};
  if (std::find(std::begin(known_ids), std::end(known_ids), device.device) != std::end(known_ids)) return true;
  return (device.class_code >> 16) == 0x12;
}

}  // namespace

std::string parse_ascend_version_info(const std::string& text) {
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.rfind("Version=", 0) == 0 || line.rfind("version=", 0) == 0) {
      std::string value = line.substr(8);
      while (!value.empty() && (value.back() == '\r' || value.back() == ' ')) value.pop_back();
      return value;
    }
  }
  return {};
}

NpuReport probe_npu(const fs::path& root) {
  NpuReport report;
  report.root = root;
  report.device_nodes = find_device_nodes(root);
  for (const char* control : {"davinci_manager", "devmm_svm", "hisi_hdc"}) {
    if (!path_exists(root / "dev" / control))
      report.missing_control_nodes.push_back(shown(root, std::string("/dev/") + control));
  }
  find_npu_smi(root, report);
  report.driver_version_file = shown(root, "/usr/local/Ascend/driver/version.info");
  std::ifstream version_file(report.driver_version_file);
  if (version_file) {
    report.driver_installed = true;
    std::ostringstream text;
    text << version_file.rdbuf();
    report.driver_version = parse_ascend_version_info(text.str());
  }
  if (path_exists(root / "usr/local/Ascend/ascend-toolkit/latest"))
    report.toolkit_path = shown(root, "/usr/local/Ascend/ascend-toolkit/latest");
  for (const PciDevice& device : list_pci_devices(root)) report.pci_accelerators += is_ascend(device) ? 1 : 0;
  report.why_not_compiled_in = "retort has no Ascend (CANN) backend yet; NPUs are detected, not used";
  return report;
}

NpuReport probe_npu() {
  const char* root = std::getenv("RETORT_NPU_ROOT");
  return probe_npu(root != nullptr && *root != '\0' ? fs::path(root) : fs::path("/"));
}

}  // namespace retort
