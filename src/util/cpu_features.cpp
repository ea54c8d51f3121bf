#include "util/cpu_features.h"
#include "util/text.h"

#include <sched.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <utility>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define RETORT_X86 1
#endif
#if defined(__linux__)
#include <sys/syscall.h>
#endif

namespace retort {
namespace {

// The value of the first "key : value" line of /proc/cpuinfo with this key; empty when absent.
std::string proc_cpuinfo_value(const std::string& key) {
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line)) {
    auto colon = line.find(':');
    if (colon != std::string::npos && trim_ascii_whitespace(std::string_view(line).substr(0, colon)) == key) {
      return std::string(trim_ascii_whitespace(std::string_view(line).substr(colon + 1)));
    }
  }
  return {};
}

int count_physical_cores() {
  namespace fs = std::filesystem;
  std::set<std::pair<std::string, std::string>> package_and_core;
  std::error_code error;
  for (const auto& entry : fs::directory_iterator("/sys/devices/system/cpu", error)) {
    std::string name = entry.path().filename().string();
    if (name.size() < 4 || name.compare(0, 3, "cpu") != 0 ||
        name.find_first_not_of("0123456789", 3) != std::string::npos)
      continue;
    std::ifstream package_file(entry.path() / "topology" / "physical_package_id");
    std::ifstream core_file(entry.path() / "topology" / "core_id");
    std::string package, core;
    if (package_file >> package && core_file >> core) package_and_core.emplace(package, core);
  }
  return static_cast<int>(package_and_core.size());
}

int count_allowed_cores() {
#if defined(__linux__)
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  if (sched_getaffinity(0, sizeof(allowed), &allowed) == 0) return CPU_COUNT(&allowed);
#endif
  return 0;
}

void detect_cores(CpuFeatures& features) {
  long online = sysconf(_SC_NPROCESSORS_ONLN);
  features.logical_cores = online > 0 ? static_cast<int>(online) : 1;
  features.physical_cores = count_physical_cores();
  // Containers and some VMs hide the topology files; then hardware threads are all we know.
  if (features.physical_cores <= 0 || features.physical_cores > features.logical_cores)
    features.physical_cores = features.logical_cores;
  features.allowed_cores = count_allowed_cores();
  if (features.allowed_cores <= 0) features.allowed_cores = features.logical_cores;
}

#if RETORT_X86

struct CpuidRegisters {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
};

CpuidRegisters cpuid(unsigned leaf, unsigned subleaf) {
  CpuidRegisters registers;
  __cpuid_count(leaf, subleaf, registers.eax, registers.ebx, registers.ecx, registers.edx);
  return registers;
}

bool bit(unsigned value, int index) { return (value >> index) & 1u; }

uint64_t read_xcr0() {
  uint32_t low = 0, high = 0;
  __asm__ volatile("xgetbv" : "=a"(low), "=d"(high) : "c"(0));
  return (static_cast<uint64_t>(high) << 32) | low;
}

std::string vendor_string() {
  CpuidRegisters leaf0 = cpuid(0, 0);
  char vendor[13] = {};
  std::memcpy(vendor + 0, &leaf0.ebx, 4);
  std::memcpy(vendor + 4, &leaf0.edx, 4);
  std::memcpy(vendor + 8, &leaf0.ecx, 4);
  return vendor;
}

std::string brand_string() {
  if (__get_cpuid_max(0x80000000u, nullptr) < 0x80000004u) return {};
  char brand[49] = {};
  for (unsigned part = 0; part < 3; ++part) {
    CpuidRegisters registers = cpuid(0x80000002u + part, 0);
    unsigned words[4] = {registers.eax, registers.ebx, registers.ecx, registers.edx};
    std::memcpy(brand + 16 * part, words, 16);
  }
  return std::string(trim_ascii_whitespace(brand));
}

// Linux (5.16+) makes a process ask before it may use AMX tile data; asking is idempotent and is
// what the AMX kernels would have to do anyway, so the report reflects what they would get.
bool request_amx_permission() {
#if defined(__linux__) && defined(SYS_arch_prctl)
  constexpr int kArchReqXcompPerm = 0x1023;
  constexpr int kXfeatureXtiledata = 18;
  return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
#else
  return false;
#endif
}

void detect_isa(CpuFeatures& features) {
  features.vendor = vendor_string();
  unsigned max_leaf = __get_cpuid_max(0, nullptr);
  if (max_leaf < 1) return;
  CpuidRegisters leaf1 = cpuid(1, 0);
  CpuidRegisters leaf7{}, leaf7_1{};
  if (max_leaf >= 7) {
    leaf7 = cpuid(7, 0);
    if (leaf7.eax >= 1) leaf7_1 = cpuid(7, 1);  // eax of subleaf 0 is the highest subleaf
  }
  bool osxsave = bit(leaf1.ecx, 27);
  features.xcr0 = osxsave ? read_xcr0() : 0;
  features.os_saves_avx = (features.xcr0 & 0x6) == 0x6;
  features.os_saves_avx512 = features.os_saves_avx && (features.xcr0 & 0xe0) == 0xe0;
  features.os_saves_amx = (features.xcr0 & 0x60000) == 0x60000;

  struct Flag {
    const char* name;
    bool cpu_has;
    bool os_saves;
    bool* usable;
  };
  bool avx = bit(leaf1.ecx, 28);
  const Flag flags[] = {
      {"avx2", avx && bit(leaf7.ebx, 5), features.os_saves_avx, &features.avx2},
      {"fma", avx && bit(leaf1.ecx, 12), features.os_saves_avx, &features.fma},
      {"f16c", avx && bit(leaf1.ecx, 29), features.os_saves_avx, &features.f16c},
      {"avx_vnni", bit(leaf7_1.eax, 4), features.os_saves_avx, &features.avx_vnni},
      {"avx512f", bit(leaf7.ebx, 16), features.os_saves_avx512, &features.avx512f},
      {"avx512bw", bit(leaf7.ebx, 30), features.os_saves_avx512, &features.avx512bw},
      {"avx512dq", bit(leaf7.ebx, 17), features.os_saves_avx512, &features.avx512dq},
      {"avx512vl", bit(leaf7.ebx, 31), features.os_saves_avx512, &features.avx512vl},
      {"avx512_vnni", bit(leaf7.ecx, 11), features.os_saves_avx512, &features.avx512_vnni},
      {"avx512_bf16", bit(leaf7_1.eax, 5), features.os_saves_avx512, &features.avx512_bf16},
      {"amx_tile", bit(leaf7.edx, 24), features.os_saves_amx, &features.amx_tile},
      {"amx_bf16", bit(leaf7.edx, 22), features.os_saves_amx, &features.amx_bf16},
      {"amx_int8", bit(leaf7.edx, 25), features.os_saves_amx, &features.amx_int8},
  };
  for (const Flag& flag : flags) {
    *flag.usable = flag.cpu_has && flag.os_saves;
    if (flag.cpu_has && !flag.os_saves) features.disabled_by_os.emplace_back(flag.name);
  }
  if (features.amx_tile) {
    features.amx_permitted = request_amx_permission();
    if (!features.amx_permitted) {
      for (auto [name, usable] : {std::pair{"amx_tile", &features.amx_tile}, std::pair{"amx_bf16", &features.amx_bf16},
                                  std::pair{"amx_int8", &features.amx_int8}}) {
        if (*usable) features.disabled_by_os.emplace_back(name);
        *usable = false;
      }
    }
  }
}

#endif  // RETORT_X86

CpuFeatures detect_cpu_features() {
  CpuFeatures features;
#if RETORT_X86
  detect_isa(features);
  features.model_name = brand_string();
#endif
  if (features.model_name.empty()) features.model_name = proc_cpuinfo_value("model name");
  if (features.model_name.empty()) features.model_name = "unknown";
  detect_cores(features);
  return features;
}

}  // namespace

const CpuFeatures& cpu_features() {
  static const CpuFeatures features = detect_cpu_features();
  return features;
}

std::vector<std::pair<std::string, bool>> cpu_feature_flags(const CpuFeatures& features) {
  return {
      {"avx2", features.avx2},
      {"fma", features.fma},
      {"f16c", features.f16c},
      {"avx_vnni", features.avx_vnni},
      {"avx512f", features.avx512f},
      {"avx512bw", features.avx512bw},
      {"avx512dq", features.avx512dq},
      {"avx512vl", features.avx512vl},
      {"avx512_vnni", features.avx512_vnni},
      {"avx512_bf16", features.avx512_bf16},
      {"amx_tile", features.amx_tile},
      {"amx_bf16", features.amx_bf16},
      {"amx_int8", features.amx_int8},
  };
}

}  // namespace retort
