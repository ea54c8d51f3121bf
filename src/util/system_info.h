#pragma once
// Memory and huge-page facts from /proc and /sys, and the PCI devices present, for `retort doctor`
// (is there room for the weights, will THP back the KV cache, is a GPU or NPU physically there
// even when its driver is not). Everything is read from files under a root directory so tests can
// point it at a fake tree.
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace retort {

struct MemoryInfo {
  uint64_t total_bytes = 0;
  uint64_t available_bytes = 0;     // MemAvailable: what can be allocated without swapping
  uint64_t cgroup_limit_bytes = 0;  // the container's memory.max; 0 when unlimited or unknown
  uint64_t huge_pages_total = 0;    // pre-reserved hugetlbfs pages (HugePages_Total)
  uint64_t huge_pages_free = 0;
  uint64_t huge_page_size_bytes = 0;
  std::string transparent_hugepage;  // "always", "madvise", "never"; empty when unknown
};

// Parses the text of /proc/meminfo (the huge-page and memory fields only).
MemoryInfo parse_meminfo(std::string_view meminfo_text);

// The bracketed choice in /sys/kernel/mm/transparent_hugepage/enabled ("always [madvise] never").
std::string parse_selected_mode(std::string_view sysfs_text);

MemoryInfo read_memory_info(const std::filesystem::path& root = "/");

struct PciDevice {
  std::string address;  // "0000:3b:00.0"
  uint32_t vendor = 0;  // 0x10de NVIDIA, 0x19e5 Huawei
  uint32_t device = 0;
  uint32_t class_code = 0;  // 24 bits: base class, subclass, programming interface
};

// Every device under <root>/sys/bus/pci/devices; empty when sysfs is not mounted.
std::vector<PciDevice> list_pci_devices(const std::filesystem::path& root = "/");

}  // namespace retort
