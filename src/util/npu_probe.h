#pragma once
// Ascend NPU presence, found the way an operator checks by hand before `npu-smi info`: the
// /dev/davinci* device nodes and the driver's control nodes, npu-smi on PATH, the driver's
// version.info, the CANN toolkit, and Huawei accelerators on the PCI bus. Plain filesystem checks
// (no Ascend libraries), so it runs anywhere. RETORT_NPU_ROOT moves "/" for tests.
#include <filesystem>
#include <string>
#include <vector>

namespace retort {

struct NpuReport {
  std::filesystem::path root;                      // "/" unless RETORT_NPU_ROOT says otherwise
  std::vector<std::string> device_nodes;           // "/dev/davinci0", ... in index order
  std::vector<std::string> missing_control_nodes;  // of davinci_manager, devmm_svm, hisi_hdc
  std::string npu_smi_path;                        // empty when npu-smi was not found at all
  bool npu_smi_on_path = false;                    // false when found only in /usr/local/sbin or similar
  std::string driver_version_file;                 // where version.info was looked for
  bool driver_installed = false;                   // version.info exists
  std::string driver_version;                      // its Version= line; empty when unreadable
  std::string toolkit_path;                        // the CANN toolkit's "latest" link; empty when absent
  int pci_accelerators = 0;                        // Huawei Ascend functions on the PCI bus
  bool backend_compiled_in = false;
  std::string why_not_compiled_in;

  bool has_device() const { return !device_nodes.empty(); }
};

// Probes under RETORT_NPU_ROOT when set, else under "/".
NpuReport probe_npu();
NpuReport probe_npu(const std::filesystem::path& root);

// The value of the "Version=" line of an Ascend version.info file; empty when there is none.
std::string parse_ascend_version_info(const std::string& text);

}  // namespace retort
