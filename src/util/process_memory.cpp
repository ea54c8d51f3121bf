#include "util/process_memory.h"

#include <fstream>
#include <string>

namespace retort {
namespace {

// A "Name:   1234 kB" field of a /proc/self file, in bytes; 0 when absent.
uint64_t field_bytes(const char* file, const std::string& name) {
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line)) {
    if (line.compare(0, name.size() + 1, name + ":") != 0) continue;
    try {
      return std::stoull(line.substr(name.size() + 1)) * 1024;  // the kernel always reports kB
    } catch (const std::exception&) {
      return 0;
    }
  }
  return 0;
}

}  // namespace

uint64_t resident_bytes() { return field_bytes("/proc/self/status", "VmRSS"); }

uint64_t peak_resident_bytes() { return field_bytes("/proc/self/status", "VmHWM"); }

uint64_t huge_page_bytes() { return field_bytes("/proc/self/smaps_rollup", "AnonHugePages"); }

bool reset_peak_resident() {
  std::ofstream clear_refs("/proc/self/clear_refs");
  clear_refs << "5";
  clear_refs.flush();
  return static_cast<bool>(clear_refs);
}

}  // namespace retort
