// `retort doctor`: what a user checks before deploying (the guide's "npu-smi info" step) in one
// report: the CPU's instruction sets, memory and huge pages, CUDA devices, Ascend NPUs, and which
// optional backends this binary has. Every ✗ comes with what to do about it. The facts come from
// util/ and kernels/; this file only judges them and prints them (text, or --json).
#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "dist/communicator.h"
#include "build_info.h"
#include "cli/commands.h"
#include "kernels/device_info.h"
#include "util/cpu_features.h"
#include "util/npu_probe.h"
#include "util/system_info.h"

namespace retort::cli {
namespace {

using nlohmann::json;

// Exit code for --require when the device is absent (1 and 2 are taken by errors and bugs).
constexpr int kRequirementMissingExitCode = 3;

struct DoctorFacts {
  const CpuFeatures& cpu;
  MemoryInfo memory;
  CudaReport cuda;
  NpuReport npu;
  int nvidia_pci_functions = 0;  // NVIDIA display/3D controllers on the PCI bus; -1 = no sysfs
};

enum class Mark { Ok, Missing, Note };

struct Finding {
  Mark mark;
  std::string text;
  std::string fix;        // what to do; only for Mark::Missing
  bool optional = false;  // missing, but retort works without it (a faster kernel, say)
};

struct Section {
  std::string title;
  std::vector<Finding> findings = {};
  void ok(std::string text) { findings.push_back({Mark::Ok, std::move(text), {}}); }
  void note(std::string text) { findings.push_back({Mark::Note, std::move(text), {}}); }
  void missing(std::string text, std::string fix) {
    findings.push_back({Mark::Missing, std::move(text), std::move(fix)});
  }
  void missing_optional(std::string text, std::string fix) {
    findings.push_back({Mark::Missing, std::move(text), std::move(fix), true});
  }
};

std::string gib(uint64_t bytes) { return fmt::format("{:.1f} GiB", static_cast<double>(bytes) / (1ull << 30)); }

bool disabled_by_os(const CpuFeatures& cpu, const std::string& name) {
  return std::find(cpu.disabled_by_os.begin(), cpu.disabled_by_os.end(), name) != cpu.disabled_by_os.end();
}

int count_nvidia_gpus(const std::vector<PciDevice>& devices) {
  if (devices.empty()) return -1;  // every machine has some PCI device: sysfs is just not there
  constexpr uint32_t kNvidia = 0x10de;
  constexpr uint32_t kDisplayControllerClass = 0x03;
  return static_cast<int>(std::count_if(devices.begin(), devices.end(), [&](const PciDevice& device) {
    return device.vendor == kNvidia && (device.class_code >> 16) == kDisplayControllerClass;
  }));
}

// ---- CPU -------------------------------------------------------------------------------------

// An optional instruction set: ✓ when usable, else ✗ with why it does not matter much.
void judge_optional_isa(Section& section, bool usable, bool masked_by_os, const std::string& name,
                        const std::string& used_for, const std::string& which_cpus) {
  if (usable) {
    section.ok(fmt::format("{} ({})", name, used_for));
  } else if (masked_by_os) {
    section.missing_optional(fmt::format("{}: the CPU has it but the OS does not enable its registers", name),
                             "optional. On a VM, expose the host CPU's features (e.g. QEMU/libvirt -cpu host); on "
                             "bare metal, use a kernel that enables them (AMX: Linux 5.16+) and boot without "
                             "'noxsave'/'clearcpuid'. Until then other kernels are used.");
  } else {
    section.missing_optional(
        fmt::format("{}: not on this CPU", name),
        fmt::format("optional; nothing to do. It needs {}; retort falls back to other kernels.", which_cpus));
  }
}

Section judge_cpu(const CpuFeatures& cpu) {
  Section section{"CPU"};
  section.note(fmt::format("model: {} ({})", cpu.model_name, cpu.vendor.empty() ? "unknown vendor" : cpu.vendor));
  std::string cores = fmt::format("cores: {} logical, {} physical", cpu.logical_cores, cpu.physical_cores);
  if (cpu.allowed_cores < cpu.logical_cores)
    cores += fmt::format("; this process may use only {} (taskset / container cpuset)", cpu.allowed_cores);
  section.note(cores);

  if (cpu.avx2 && cpu.fma && cpu.f16c) {
    section.ok("AVX2 + FMA + F16C (the baseline retort's CPU kernels need)");
  } else if (disabled_by_os(cpu, "avx2")) {
    section.missing("AVX2: the CPU has it but the OS does not enable AVX registers (XCR0)",
                    "retort's CPU kernels need AVX2. On a VM, expose the host CPU (QEMU/libvirt -cpu host, or "
                    "an instance type with AVX2); on bare metal, boot without 'noxsave'/'clearcpuid'.");
  } else {
    section.missing("AVX2 + FMA + F16C: not all present",
                    "retort's CPU kernels need AVX2, FMA and F16C (Intel Haswell / AMD Zen or newer). Use a "
                    "newer machine or VM type, or run on a CUDA GPU.");
  }
  bool avx512 = cpu.avx512f && cpu.avx512bw && cpu.avx512vl;
  judge_optional_isa(section, avx512, disabled_by_os(cpu, "avx512f"), "AVX-512 F/BW/VL", "512-bit kernels",
                     "Intel Skylake-SP / Ice Lake or AMD Zen 4 and newer");
  judge_optional_isa(section, cpu.avx512_vnni || cpu.avx_vnni,
                     disabled_by_os(cpu, "avx512_vnni") || disabled_by_os(cpu, "avx_vnni"),
                     cpu.avx512_vnni ? "AVX-512 VNNI" : "VNNI (AVX-512 or AVX-VNNI)",
                     "int8 dot products for q8_0/q4 weights", "Intel Cascade Lake / Alder Lake or AMD Zen 4 and newer");
  judge_optional_isa(section, cpu.avx512_bf16, disabled_by_os(cpu, "avx512_bf16"), "AVX-512 BF16", "bf16 dot products",
                     "Intel Cooper Lake / Sapphire Rapids or AMD Zen 4 and newer");
  bool amx = cpu.amx_tile && cpu.amx_bf16 && cpu.amx_int8;
  judge_optional_isa(section, amx, disabled_by_os(cpu, "amx_tile"), "AMX tile/BF16/INT8", "tile matrix multiply",
                     "Intel Sapphire Rapids and newer, and Linux 5.16+");
  return section;
}

// ---- memory ----------------------------------------------------------------------------------

// The largest DeepSeek-R1-Distill whose weights alone fit, per storage format; the KV cache and
// activations need the remaining headroom.
std::string largest_model_that_fits(uint64_t usable_bytes) {
  struct Model {
    const char* name;
    double parameters;
  };
  const Model models[] = {{"1.5B", 1.78e9}, {"7B", 7.62e9},  {"8B", 8.03e9},
                          {"14B", 14.8e9},  {"32B", 32.8e9}, {"70B", 70.6e9}};
  struct Format {
    const char* name;
    double bits_per_weight;
  };
  const Format formats[] = {{"f16", 16.0}, {"q8_0", 8.5}, {"q4_k", 4.5}};
  std::vector<std::string> parts;
  for (const Format& format : formats) {
    const char* largest = "none";
    for (const Model& model : models) {
      if (model.parameters * format.bits_per_weight / 8.0 <= 0.85 * static_cast<double>(usable_bytes))
        largest = model.name;
    }
    parts.push_back(fmt::format("{} {}", format.name, largest));
  }
  return fmt::format("largest R1-Distill whose weights fit: {}", fmt::join(parts, ", "));
}

Section judge_memory(const MemoryInfo& memory) {
  Section section{"Memory"};
  uint64_t usable = memory.available_bytes;
  std::string line = fmt::format("{} total, {} available", gib(memory.total_bytes), gib(memory.available_bytes));
  if (memory.cgroup_limit_bytes != 0) {
    line += fmt::format(", container limit {}", gib(memory.cgroup_limit_bytes));
    usable = std::min(usable, memory.cgroup_limit_bytes);
  }
  if (memory.total_bytes == 0) {
    section.missing("could not read /proc/meminfo", "check that /proc is mounted");
  } else {
    section.ok(line);
    section.note(largest_model_that_fits(usable));
  }
  const std::string& thp = memory.transparent_hugepage;
  if (thp == "always" || thp == "madvise") {
    section.ok(fmt::format("transparent huge pages: {} (fewer TLB misses on weights and KV cache)", thp));
  } else if (thp == "never") {
    section.missing("transparent huge pages: never",
                    "enable them for faster weight access: echo madvise | sudo tee "
                    "/sys/kernel/mm/transparent_hugepage/enabled (add transparent_hugepage=madvise to the "
                    "kernel command line to keep it)");
  } else {
    section.note("transparent huge pages: unknown (no /sys/kernel/mm/transparent_hugepage)");
  }
  section.note(fmt::format("reserved huge pages (hugetlbfs): {} of {} free, {} each (optional)", memory.huge_pages_free,
                           memory.huge_pages_total,
                           memory.huge_page_size_bytes >= (1u << 20)
                               ? fmt::format("{} MiB", memory.huge_page_size_bytes >> 20)
                               : fmt::format("{} KiB", memory.huge_page_size_bytes >> 10)));
  return section;
}

// ---- CUDA ------------------------------------------------------------------------------------

std::string cuda_driver_fix(const DoctorFacts& facts) {
  const CudaReport& cuda = facts.cuda;
  if (cuda.driver_version > 0 && cuda.driver_version < cuda.runtime_version)
    return fmt::format(
        "the driver supports CUDA {} but retort was built with CUDA {}: update the NVIDIA driver "
        "(nvidia-smi shows its 'CUDA Version')",
        cuda_version_string(cuda.driver_version), cuda_version_string(cuda.runtime_version));
  if (facts.nvidia_pci_functions > 0)
    return fmt::format(
        "an NVIDIA GPU is on the PCI bus but no driver answers: install the NVIDIA driver for "
        "CUDA {} or newer and check that `nvidia-smi` lists the GPU; in a container, start it "
        "with --gpus all (NVIDIA Container Toolkit)",
        cuda_version_string(cuda.runtime_version));
  return fmt::format(
      "{}. If it should have one: on a cloud VM pick a GPU instance type; in a container, "
      "start it with --gpus all (NVIDIA Container Toolkit) and check `nvidia-smi` inside it. "
      "Otherwise nothing to do: retort runs on the CPU.",
      facts.nvidia_pci_functions == 0 ? "no NVIDIA GPU is on this machine's PCI bus"
                                      : "no NVIDIA driver is installed (and /sys/bus/pci is not "
                                        "readable to tell whether a GPU is there)");
}

Section judge_cuda(const DoctorFacts& facts) {
  const CudaReport& cuda = facts.cuda;
  Section section{"CUDA"};
  if (!cuda.compiled_in) {
    section.missing(fmt::format("CUDA device detection not compiled in: {}", cuda.why_not),
                    "install the CUDA toolkit (nvcc, cudart) and rebuild: cmake --preset release && cmake "
                    "--build --preset release");
    return section;
  }
  section.ok(fmt::format("CUDA device detection compiled in (runtime {}); the kernels run on the CPU backend only", cuda_version_string(cuda.runtime_version)));
  if (cuda.driver_version > 0)
    section.note(fmt::format("driver supports CUDA {}", cuda_version_string(cuda.driver_version)));
  if (const char* visible = std::getenv("CUDA_VISIBLE_DEVICES"))
    section.note(fmt::format("CUDA_VISIBLE_DEVICES={}", visible));
  for (const CudaDeviceInfo& device : cuda.devices) {
    section.ok(fmt::format("GPU {}: {}, {}, compute capability {}.{}, {} SMs{}", device.index, device.name,
                           gib(device.total_memory_bytes), device.compute_major, device.compute_minor,
                           device.multiprocessors, device.pci_bus_id.empty() ? "" : ", bus " + device.pci_bus_id));
  }
  switch (cuda.problem) {
    case CudaProblem::None:
    case CudaProblem::NotCompiledIn:
      break;
    case CudaProblem::NoDriver:
      section.missing(fmt::format("no usable NVIDIA driver ({})", cuda.error), cuda_driver_fix(facts));
      break;
    case CudaProblem::NoDevice:
      section.missing(fmt::format("no CUDA device ({})", cuda.error.empty() ? "the driver lists none" : cuda.error),
                      "run `nvidia-smi`: if it lists no GPU, the hardware or driver is the problem; if it does, "
                      "check CUDA_VISIBLE_DEVICES and, in a container, --gpus all");
      break;
    case CudaProblem::QueryFailed:
      section.missing(fmt::format("CUDA query failed ({})", cuda.error),
                      "run `nvidia-smi` and check `dmesg | grep -i nvrm` for driver errors; a reboot after a "
                      "driver update is often needed");
      break;
  }
  return section;
}

// ---- Ascend NPU ------------------------------------------------------------------------------

constexpr const char* kNpuContainerFlags =
    "docker run --device=/dev/davinci0 --device=/dev/davinci_manager --device=/dev/devmm_svm "
    "--device=/dev/hisi_hdc -v /usr/local/Ascend/driver:/usr/local/Ascend/driver:ro "
    "-v /usr/local/sbin/npu-smi:/usr/local/sbin/npu-smi ...";

std::string npu_no_device_fix(const NpuReport& npu) {
  if (npu.pci_accelerators > 0 && !npu.driver_installed)
    return "an Ascend card is on the PCI bus but its driver is not installed: install the Ascend driver and "
           "firmware packages (Ascend-hdk-*-npu-driver, -npu-firmware) and reboot, then run `npu-smi info`";
  if (npu.driver_installed)
    return fmt::format(
        "the driver is installed but no chip is visible. On the host: `npu-smi info`, "
        "`lsmod | grep drv`, `dmesg | grep -i davinci`; reinstall driver and firmware and reboot. "
        "In a container, pass the devices and driver in: {}",
        kNpuContainerFlags);
  return "no Ascend hardware, driver or device nodes here. If this should be an NPU host: install the Ascend "
         "driver and firmware on the host; in a container, pass the devices and driver in (see `retort doctor` "
         "on the host first). Otherwise nothing to do.";
}

Section judge_npu(const NpuReport& npu) {
  Section section{"Ascend NPU"};
  if (npu.has_device()) {
    section.ok(fmt::format("{} NPU device node(s): {}", npu.device_nodes.size(), fmt::join(npu.device_nodes, ", ")));
    if (!npu.missing_control_nodes.empty())
      section.missing(
          fmt::format("driver control nodes missing: {}", fmt::join(npu.missing_control_nodes, ", ")),
          fmt::format("the runtime needs them besides /dev/davinciN; in a container: {}", kNpuContainerFlags));
  } else {
    section.missing("no NPU device (no /dev/davinci* nodes)", npu_no_device_fix(npu));
    section.note(
        "`npu-smi info` saying \"device not found\" means the same thing: the driver sees no chip, "
        "because the driver/firmware is not loaded on the host or the container was not given the "
        "/dev/davinci* nodes");
  }
  if (npu.pci_accelerators > 0) section.note(fmt::format("Huawei Ascend PCI functions: {}", npu.pci_accelerators));
  if (npu.driver_installed) {
    section.ok(fmt::format("driver {} ({})", npu.driver_version.empty() ? "(version unreadable)" : npu.driver_version,
                           npu.driver_version_file));
  } else if (npu.has_device() || npu.pci_accelerators > 0) {
    section.missing(fmt::format("driver: no {}", npu.driver_version_file),
                    "install the Ascend driver package; in a container, mount /usr/local/Ascend/driver read-only");
  }
  if (npu.npu_smi_on_path) {
    section.ok(fmt::format("npu-smi: {} (run `npu-smi info` to see chip health and memory)", npu.npu_smi_path));
  } else if (!npu.npu_smi_path.empty()) {
    section.missing(
        fmt::format("npu-smi is at {} but not on PATH", npu.npu_smi_path),
        fmt::format("export PATH=$PATH:{}", std::filesystem::path(npu.npu_smi_path).parent_path().string()));
  } else if (npu.has_device() || npu.driver_installed) {
    section.missing("npu-smi not found",
                    "it ships with the Ascend driver; in a container mount "
                    "/usr/local/sbin/npu-smi from the host");
  }
  if (!npu.toolkit_path.empty()) section.note(fmt::format("CANN toolkit: {}", npu.toolkit_path));
  return section;
}

// ---- build -----------------------------------------------------------------------------------

Section judge_build(const DoctorFacts& facts) {
  Section section{"This build"};
  section.note(fmt::format("retort {} ({}, {})", RETORT_VERSION, RETORT_BUILD_TYPE, RETORT_COMPILER));
  // Not a ✗ here: the CUDA section above already says what to do about it.
  if (facts.cuda.compiled_in) {
    section.ok("CUDA device detection: compiled in (no CUDA kernels yet)");
  } else {
    section.note(fmt::format("CUDA device detection: not compiled in ({})", facts.cuda.why_not));
  }
  section.note(fmt::format("Ascend backend: not compiled in ({})", facts.npu.why_not_compiled_in));
  if (dist::mpi_compiled_in()) {
    section.ok("MPI: compiled in (data-parallel train/distill under mpirun)");
  } else {
    section.note(fmt::format("MPI: not compiled in ({}); for data-parallel training install libopenmpi-dev "
                             "openmpi-bin and rebuild", dist::mpi_why_not()));
  }
  return section;
}

// ---- summary ---------------------------------------------------------------------------------

Section summarize(const DoctorFacts& facts) {
  Section section{"Summary"};
  const CpuFeatures& cpu = facts.cpu;
  if (cpu.avx2 && cpu.fma && cpu.f16c) {
    bool avx512 = cpu.avx512f && cpu.avx512bw && cpu.avx512vl;
    section.ok(
        fmt::format("CPU inference: ready ({} kernels, {} threads)", avx512 ? "AVX-512" : "AVX2", cpu.allowed_cores));
  } else {
    section.missing("CPU inference: not possible on this CPU", "see the CPU section above");
  }
  if (!facts.cuda.devices.empty())
    section.ok(fmt::format("CUDA: {} GPU(s) usable", facts.cuda.devices.size()));
  else
    section.note("CUDA: not usable here (see above); retort uses the CPU");
  if (facts.npu.has_device())
    section.note(
        fmt::format("Ascend: {} NPU(s) present, not used (no Ascend backend yet)", facts.npu.device_nodes.size()));
  else
    section.note("Ascend: no NPU");
  return section;
}

// ---- output ----------------------------------------------------------------------------------

void print_text(const std::vector<Section>& sections) {
  std::printf("retort doctor\n");
  int missing = 0;
  for (const Section& section : sections) {
    std::printf("\n%s\n", section.title.c_str());
    for (const Finding& finding : section.findings) {
      const char* mark = finding.mark == Mark::Ok ? "✓" : finding.mark == Mark::Missing ? "✗" : "·";
      std::printf("  %s %s\n", mark, finding.text.c_str());
      if (finding.mark == Mark::Missing) {
        std::printf("      what to do: %s\n", finding.fix.c_str());
        ++missing;
      }
    }
  }
  if (missing > 0) std::printf("\n%d item(s) marked ✗; each says whether it matters and what to do.\n", missing);
}

json cpu_json(const CpuFeatures& cpu) {
  json features = json::object();
  for (const auto& [name, usable] : cpu_feature_flags(cpu)) features[name] = usable;
  return {{"model", cpu.model_name},
          {"vendor", cpu.vendor},
          {"logical_cores", cpu.logical_cores},
          {"physical_cores", cpu.physical_cores},
          {"allowed_cores", cpu.allowed_cores},
          {"features", features},
          {"xcr0", cpu.xcr0},
          {"os_saves_avx", cpu.os_saves_avx},
          {"os_saves_avx512", cpu.os_saves_avx512},
          {"os_saves_amx", cpu.os_saves_amx},
          {"amx_permitted", cpu.amx_permitted},
          {"disabled_by_os", cpu.disabled_by_os}};
}

json memory_json(const MemoryInfo& memory) {
  return {{"total_bytes", memory.total_bytes},
          {"available_bytes", memory.available_bytes},
          {"cgroup_limit_bytes", memory.cgroup_limit_bytes},
          {"huge_pages_total", memory.huge_pages_total},
          {"huge_pages_free", memory.huge_pages_free},
          {"huge_page_size_bytes", memory.huge_page_size_bytes},
          {"transparent_hugepage", memory.transparent_hugepage}};
}

const char* problem_name(CudaProblem problem) {
  switch (problem) {
    case CudaProblem::None:
      return "none";
    case CudaProblem::NotCompiledIn:
      return "not_compiled_in";
    case CudaProblem::NoDriver:
      return "no_driver";
    case CudaProblem::NoDevice:
      return "no_device";
    case CudaProblem::QueryFailed:
      return "query_failed";
  }
  return "unknown";
}

json cuda_json(const DoctorFacts& facts) {
  const CudaReport& cuda = facts.cuda;
  json devices = json::array();
  for (const CudaDeviceInfo& device : cuda.devices) {
    devices.push_back({{"index", device.index},
                       {"name", device.name},
                       {"total_memory_bytes", device.total_memory_bytes},
                       {"compute_capability", fmt::format("{}.{}", device.compute_major, device.compute_minor)},
                       {"multiprocessors", device.multiprocessors},
                       {"pci_bus_id", device.pci_bus_id}});
  }
  auto version = [](int encoded) { return encoded > 0 ? json(cuda_version_string(encoded)) : json(nullptr); };
  return {{"compiled_in", cuda.compiled_in},
          {"why_not", cuda.why_not},
          {"driver_version", version(cuda.driver_version)},
          {"runtime_version", version(cuda.runtime_version)},
          {"devices", devices},
          {"problem", problem_name(cuda.problem)},
          {"error", cuda.error},
          {"nvidia_pci_functions", facts.nvidia_pci_functions}};
}

json npu_json(const NpuReport& npu) {
  return {{"root", npu.root.string()},
          {"device_nodes", npu.device_nodes},
          {"missing_control_nodes", npu.missing_control_nodes},
          {"npu_smi_path", npu.npu_smi_path},
          {"npu_smi_on_path", npu.npu_smi_on_path},
          {"driver_installed", npu.driver_installed},
          {"driver_version", npu.driver_version},
          {"driver_version_file", npu.driver_version_file},
          {"toolkit_path", npu.toolkit_path},
          {"pci_accelerators", npu.pci_accelerators},
          {"backend_compiled_in", npu.backend_compiled_in},
          {"why_not_compiled_in", npu.why_not_compiled_in}};
}

json report_json(const DoctorFacts& facts, const std::vector<Section>& sections, const json& requirements) {
  json missing = json::array();
  for (const Section& section : sections) {
    for (const Finding& finding : section.findings) {
      if (finding.mark == Mark::Missing)
        missing.push_back(
            {{"section", section.title}, {"what", finding.text}, {"fix", finding.fix}, {"optional", finding.optional}});
    }
  }
  return {{"retort", {{"version", RETORT_VERSION}, {"build_type", RETORT_BUILD_TYPE}, {"compiler", RETORT_COMPILER}}},
          {"compiled_in",
           {{"cuda", {{"enabled", facts.cuda.compiled_in}, {"why_not", facts.cuda.why_not}}},
            {"ascend", {{"enabled", facts.npu.backend_compiled_in}, {"why_not", facts.npu.why_not_compiled_in}}}}},
          {"cpu", cpu_json(facts.cpu)},
          {"memory", memory_json(facts.memory)},
          {"cuda", cuda_json(facts)},
          {"npu", npu_json(facts.npu)},
          {"missing", missing},
          {"requirements", requirements}};
}

// Empty when the device is there, else why it is not.
std::string why_requirement_unmet(const std::string& device, const DoctorFacts& facts) {
  if (device == "cuda") {
    if (facts.cuda.problem == CudaProblem::None && !facts.cuda.devices.empty()) return {};
    if (!facts.cuda.compiled_in) return "this retort was built without CUDA (" + facts.cuda.why_not + ")";
    return facts.cuda.error.empty() ? "no CUDA device found" : "no CUDA device found (" + facts.cuda.error + ")";
  }
  if (facts.npu.has_device()) return {};
  return "no Ascend NPU found (no /dev/davinci* under " + facts.npu.root.string() + ")";
}

void run_doctor(bool as_json, const std::vector<std::string>& required_devices) {
  std::vector<PciDevice> pci = list_pci_devices();
  DoctorFacts facts{cpu_features(), read_memory_info(), query_cuda(), probe_npu(), count_nvidia_gpus(pci)};
  std::vector<Section> sections = {judge_cpu(facts.cpu), judge_memory(facts.memory), judge_cuda(facts),
                                   judge_npu(facts.npu), judge_build(facts),         summarize(facts)};

  json requirements = json::object();
  std::vector<std::string> unmet;
  for (const std::string& device : required_devices) {
    std::string why = why_requirement_unmet(device, facts);
    requirements[device] = {{"met", why.empty()}, {"why_not", why}};
    if (!why.empty()) unmet.push_back(fmt::format("--require {}: {}", device, why));
  }
  if (as_json)
    std::printf("%s\n", report_json(facts, sections, requirements).dump(2).c_str());
  else
    print_text(sections);
  std::fflush(stdout);
  for (const std::string& message : unmet) std::fprintf(stderr, "error: %s\n", message.c_str());
  if (!unmet.empty()) set_exit_code(kRequirementMissingExitCode);
}

}  // namespace

void add_doctor_command(CLI::App& app) {
  auto* command =
      app.add_subcommand("doctor",
                         "Check this machine before deploying: CPU instruction sets, memory and huge pages, CUDA GPUs, "
                         "Ascend NPUs, and which backends this build has");
  struct Options {
    bool as_json = false;
    std::vector<std::string> required_devices;
  };
  auto options = std::make_shared<Options>();  // outlives this function: the callback runs later
  command->add_flag("--json", options->as_json, "Print one JSON object instead of the report");
  command
      ->add_option("--require", options->required_devices,
                   "Exit with status 3 unless this device is usable (cuda or npu); may be repeated")
      ->check(CLI::IsMember({"cuda", "npu"}));
  command->callback([options] { run_doctor(options->as_json, options->required_devices); });
}

}  // namespace retort::cli
