#include "util/process_memory.h"

#include <fstream>
#include <string>

namespace retort {
namespace {

// A "Name:   1234 kB" field of /proc/self/status, in bytes; 0 when absent.
uint64_t status_field_bytes(const std::string& name) {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
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

uint64_t resident_bytes() { return status_field_bytes("VmRSS"); }

uint64_t peak_resident_bytes() { return status_field_bytes("VmHWM"); }

bool reset_peak_resident() {
  std::ofstream clear_refs("/proc/self/clear_refs");
  clear_refs << "5";
  clear_refs.flush();
  return static_cast<bool>(clear_refs);
}

}  // namespace retort
