#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "kernels/device_info.h"
#include "test_support.h"
#include "util/cpu_features.h"
#include "util/npu_probe.h"
#include "util/system_info.h"

namespace retort {
namespace {

namespace fs = std::filesystem;

// A fresh directory per test, removed afterwards.
class TempDir {
 public:
  explicit TempDir(const std::string& name)
      : path_(fs::temp_directory_path() / ("retort-test-" + name + "-" + std::to_string(::getpid()))) {
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code error;
    fs::remove_all(path_, error);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

void write_file(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  std::ofstream(path) << text;
}

// A fake Ascend host: one chip, one of the three control nodes, an installed driver.
void make_fake_npu_host(const fs::path& root) {
  write_file(root / "dev/davinci0", "");
  write_file(root / "dev/davinci_manager", "");
  write_file(root / "usr/local/Ascend/driver/version.info", "Version=23.0.0\nascendhal_version=7.35.19\n");
}

std::string doctor(const std::string& arguments, const std::string& environment = "") {
  return environment + " '" + test::retort_binary() + "' doctor " + arguments + " 2>/dev/null";
}

TEST(CpuFeatures, AgreesWithTheCompilersOwnDetection) {
  const CpuFeatures& cpu = cpu_features();
  __builtin_cpu_init();
  EXPECT_EQ(cpu.avx2, static_cast<bool>(__builtin_cpu_supports("avx2")));
  EXPECT_EQ(cpu.fma, static_cast<bool>(__builtin_cpu_supports("fma")));
  EXPECT_EQ(cpu.avx512f, static_cast<bool>(__builtin_cpu_supports("avx512f")));
  EXPECT_EQ(cpu.avx512bw, static_cast<bool>(__builtin_cpu_supports("avx512bw")));
  EXPECT_EQ(cpu.avx512vl, static_cast<bool>(__builtin_cpu_supports("avx512vl")));
  EXPECT_GE(cpu.logical_cores, 1);
  EXPECT_GE(cpu.physical_cores, 1);
  EXPECT_LE(cpu.physical_cores, cpu.logical_cores);
  EXPECT_FALSE(cpu.model_name.empty());
  // A usable AVX-512 flag implies the OS saves the ZMM state.
  if (cpu.avx512f) {
    EXPECT_TRUE(cpu.os_saves_avx512);
  }
}

TEST(SystemInfo, ParsesMeminfoAndTheTransparentHugePageMode) {
  MemoryInfo memory = parse_meminfo(
      "MemTotal:       24683620 kB\nMemFree:        24252352 kB\nMemAvailable:   24351404 kB\n"
      "HugePages_Total:       8\nHugePages_Free:        3\nHugepagesize:       2048 kB\n");
  EXPECT_EQ(memory.total_bytes, 24683620ull * 1024);
  EXPECT_EQ(memory.available_bytes, 24351404ull * 1024);
  EXPECT_EQ(memory.huge_pages_total, 8u);
  EXPECT_EQ(memory.huge_pages_free, 3u);
  EXPECT_EQ(memory.huge_page_size_bytes, 2048u * 1024);
  EXPECT_EQ(parse_selected_mode("always [madvise] never\n"), "madvise");
  EXPECT_EQ(parse_selected_mode("[always] madvise never"), "always");
}

TEST(SystemInfo, ReadsAFakeRoot) {
  TempDir root("meminfo");
  write_file(root.path() / "proc/meminfo", "MemTotal: 1000 kB\nMemAvailable: 500 kB\n");
  write_file(root.path() / "sys/kernel/mm/transparent_hugepage/enabled", "always madvise [never]\n");
  write_file(root.path() / "sys/fs/cgroup/memory.max", "256000\n");
  write_file(root.path() / "sys/bus/pci/devices/0000:3b:00.0/vendor", "0x10de\n");
  write_file(root.path() / "sys/bus/pci/devices/0000:3b:00.0/class", "0x030200\n");
  MemoryInfo memory = read_memory_info(root.path());
  EXPECT_EQ(memory.total_bytes, 1024000u);
  EXPECT_EQ(memory.transparent_hugepage, "never");
  EXPECT_EQ(memory.cgroup_limit_bytes, 256000u);
  auto devices = list_pci_devices(root.path());
  ASSERT_EQ(devices.size(), 1u);
  EXPECT_EQ(devices[0].vendor, 0x10deu);
  EXPECT_EQ(devices[0].class_code, 0x030200u);
}

TEST(NpuProbe, FindsADeviceUnderAFakeRoot) {
  TempDir root("npu");
  make_fake_npu_host(root.path());
  NpuReport npu = probe_npu(root.path());
  ASSERT_EQ(npu.device_nodes.size(), 1u);  // davinci_manager is not a chip
  EXPECT_EQ(npu.device_nodes[0], (root.path() / "dev/davinci0").string());
  EXPECT_TRUE(npu.driver_installed);
  EXPECT_EQ(npu.driver_version, "23.0.0");
  EXPECT_EQ(npu.missing_control_nodes.size(), 2u);  // devmm_svm and hisi_hdc
  EXPECT_FALSE(npu.backend_compiled_in);
}

TEST(NpuProbe, EmptyRootHasNoDevice) {
  TempDir root("npu-empty");
  NpuReport npu = probe_npu(root.path());
  EXPECT_FALSE(npu.has_device());
  EXPECT_FALSE(npu.driver_installed);
  EXPECT_TRUE(npu.npu_smi_path.empty());
}

TEST(Doctor, JsonReportDescribesThisMachine) {
  auto result = test::run_command(doctor("--json"));
  ASSERT_EQ(result.status, 0) << result.output;
  auto report = nlohmann::json::parse(result.output);
  const CpuFeatures& cpu = cpu_features();
  EXPECT_EQ(report["cpu"]["features"]["avx2"].get<bool>(), cpu.avx2);
  EXPECT_EQ(report["cpu"]["features"]["avx512f"].get<bool>(), cpu.avx512f);
  EXPECT_EQ(report["cpu"]["logical_cores"].get<int>(), cpu.logical_cores);
  EXPECT_GT(report["memory"]["total_bytes"].get<uint64_t>(), 0u);
#ifdef RETORT_HAVE_CUDA
  EXPECT_TRUE(report["cuda"]["compiled_in"].get<bool>());
#else
  EXPECT_FALSE(report["cuda"]["compiled_in"].get<bool>());
  EXPECT_FALSE(report["cuda"]["why_not"].get<std::string>().empty());
#endif
  EXPECT_TRUE(report["missing"].is_array());
  for (const auto& missing : report["missing"]) EXPECT_FALSE(missing["fix"].get<std::string>().empty());
}

TEST(Doctor, TextReportHasSectionsMarksAndAdvice) {
  auto result = test::run_command(doctor(""));
  ASSERT_EQ(result.status, 0) << result.output;
  for (const char* expected : {"CPU", "Memory", "CUDA", "Ascend NPU", "This build", "✓"})
    EXPECT_NE(result.output.find(expected), std::string::npos) << expected;
  if (result.output.find("✗") != std::string::npos) {
    EXPECT_NE(result.output.find("what to do:"), std::string::npos);
  }
}

TEST(Doctor, RequireCudaFailsWithoutAGpu) {
  bool has_gpu = !query_cuda().devices.empty();
  auto result = test::run_command(doctor("--json --require cuda"));
  EXPECT_EQ(result.status, has_gpu ? 0 : 3);
  auto report = nlohmann::json::parse(result.output);
  EXPECT_EQ(report["requirements"]["cuda"]["met"].get<bool>(), has_gpu);
}

TEST(Doctor, RequireNpuFollowsTheDeviceNodes) {
  TempDir with_npu("doctor-npu");
  make_fake_npu_host(with_npu.path());
  auto found = test::run_command(doctor("--json --require npu", "RETORT_NPU_ROOT='" + with_npu.path().string() + "'"));
  EXPECT_EQ(found.status, 0) << found.output;
  auto report = nlohmann::json::parse(found.output);
  EXPECT_EQ(report["npu"]["device_nodes"].size(), 1u);
  EXPECT_EQ(report["npu"]["driver_version"], "23.0.0");

  TempDir without_npu("doctor-no-npu");
  auto missing = test::run_command(doctor("--require npu", "RETORT_NPU_ROOT='" + without_npu.path().string() + "'"));
  EXPECT_EQ(missing.status, 3);
}

TEST(Doctor, RejectsAnUnknownDevice) { EXPECT_NE(test::run_command(doctor("--require tpu")).status, 0); }

}  // namespace
}  // namespace retort
