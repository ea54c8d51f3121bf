#include "util/system_info.h"
#include "util/text.h"

#include <charconv>
#include <fstream>
#include <sstream>

namespace retort {
namespace {

std::string read_text_file(const std::filesystem::path& path) {
  std::ifstream file(path);
  if (!file) return {};
  std::ostringstream text;
  text << file.rdbuf();
  return text.str();
}

// Parses a leading unsigned number in the given base; 0 when there is none.
uint64_t parse_number(std::string_view text, int base = 10) {
  text = trim_ascii_whitespace(text);
  if (base == 16 && text.size() > 2 && text[0] == '0' && (text[1] == 'x' || text[1] == 'X')) text.remove_prefix(2);
  uint64_t value = 0;
  std::from_chars(text.data(), text.data() + text.size(), value, base);
  return value;
}

// The container's memory limit: cgroup v2's memory.max, else cgroup v1's limit_in_bytes. v1
// reports "unlimited" as a huge number, so a limit above physical memory counts as none.
uint64_t read_cgroup_limit(const std::filesystem::path& root, uint64_t total_bytes) {
  std::string v2 = std::string(trim_ascii_whitespace(read_text_file(root / "sys/fs/cgroup/memory.max")));
  uint64_t limit = 0;
  if (!v2.empty() && v2 != "max") {
    limit = parse_number(v2);
  } else if (v2.empty()) {
    limit = parse_number(read_text_file(root / "sys/fs/cgroup/memory/memory.limit_in_bytes"));
  }
  return (total_bytes != 0 && limit >= total_bytes) ? 0 : limit;
}

}  // namespace

MemoryInfo parse_meminfo(std::string_view meminfo_text) {
  MemoryInfo info;
  std::istringstream lines{std::string(meminfo_text)};
  std::string line;
  while (std::getline(lines, line)) {
    auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string_view key = trim_ascii_whitespace(std::string_view(line).substr(0, colon));
    std::string_view value = trim_ascii_whitespace(std::string_view(line).substr(colon + 1));
    bool in_kib = value.size() > 3 && value.substr(value.size() - 3) == " kB";
    uint64_t number = parse_number(in_kib ? value.substr(0, value.size() - 3) : value);
    uint64_t bytes = in_kib ? number * 1024 : number;
    if (key == "MemTotal")
      info.total_bytes = bytes;
    else if (key == "MemAvailable")
      info.available_bytes = bytes;
    else if (key == "HugePages_Total")
      info.huge_pages_total = number;
    else if (key == "HugePages_Free")
      info.huge_pages_free = number;
    else if (key == "Hugepagesize")
      info.huge_page_size_bytes = bytes;
  }
  return info;
}

std::string parse_selected_mode(std::string_view sysfs_text) {
  auto open = sysfs_text.find('[');
  auto close = sysfs_text.find(']', open == std::string_view::npos ? 0 : open);
  if (open == std::string_view::npos || close == std::string_view::npos) return std::string(trim_ascii_whitespace(sysfs_text));
  return std::string(sysfs_text.substr(open + 1, close - open - 1));
}

MemoryInfo read_memory_info(const std::filesystem::path& root) {
  MemoryInfo info = parse_meminfo(read_text_file(root / "proc/meminfo"));
  info.transparent_hugepage = parse_selected_mode(read_text_file(root / "sys/kernel/mm/transparent_hugepage/enabled"));
  info.cgroup_limit_bytes = read_cgroup_limit(root, info.total_bytes);
  return info;
}

std::vector<PciDevice> list_pci_devices(const std::filesystem::path& root) {
  std::vector<PciDevice> devices;
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(root / "sys/bus/pci/devices", error)) {
    PciDevice device;
    device.address = entry.path().filename().string();
    device.vendor = static_cast<uint32_t>(parse_number(read_text_file(entry.path() / "vendor"), 16));
    device.device = static_cast<uint32_t>(parse_number(read_text_file(entry.path() / "device"), 16));
    device.class_code = static_cast<uint32_t>(parse_number(read_text_file(entry.path() / "class"), 16));
    devices.push_back(std::move(device));
  }
  return devices;
}

}  // namespace retort
