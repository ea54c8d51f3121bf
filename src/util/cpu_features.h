#pragma once
// What the CPU can run *in this process*: a feature is reported true only when the CPU has it
// (cpuid) and the operating system saves its register state (xgetbv / XCR0), and for AMX only when
// Linux also granted this process the tile-data permission. The kernels dispatch on these flags,
// so "true" must mean "safe to execute".
#include <cstdint>
#include <string>
#include <vector>

namespace retort {

struct CpuFeatures {
  std::string model_name;  // the cpuid brand string, or /proc/cpuinfo's "model name"
  std::string vendor;      // "GenuineIntel", "AuthenticAMD", ...
  int logical_cores = 0;   // online hardware threads
  int physical_cores = 0;  // distinct (package, core) pairs; equals logical_cores when unknown
  int allowed_cores = 0;   // threads this process may run on (taskset, cgroup cpusets)

  bool avx2 = false;
  bool fma = false;
  bool f16c = false;
  bool avx512f = false;
  bool avx512bw = false;
  bool avx512dq = false;  // not in the kernels' baseline list, but -mavx512dq code needs it
  bool avx512vl = false;
  bool avx512_vnni = false;
  bool avx512_bf16 = false;
  bool avx_vnni = false;
  bool amx_tile = false;
  bool amx_bf16 = false;
  bool amx_int8 = false;

  uint64_t xcr0 = 0;             // the OS-enabled state components (0 when xgetbv is unavailable)
  bool os_saves_avx = false;     // XCR0 bits 1-2: XMM and YMM state
  bool os_saves_avx512 = false;  // XCR0 bits 5-7: opmask, ZMM_Hi256, Hi16_ZMM
  bool os_saves_amx = false;     // XCR0 bits 17-18: XTILECFG, XTILEDATA
  bool amx_permitted = false;    // Linux arch_prctl(ARCH_REQ_XCOMP_PERM) granted tile data
  // Features the CPU reports but cannot be used here (the OS does not enable their state), so a
  // user can tell "old CPU" from "kernel or hypervisor masks it".
  std::vector<std::string> disabled_by_os;
};

// Detected once, on first call; thread-safe.
const CpuFeatures& cpu_features();

// The flags above as (name, value) pairs in a fixed order, for reports.
std::vector<std::pair<std::string, bool>> cpu_feature_flags(const CpuFeatures& features);

}  // namespace retort
