// EnergyMeter on a powercap tree laid out in a temporary directory like /sys/class/powercap: package
// and DRAM domains add up, core subdomains are not counted twice, a wrapped counter is allowed for,
// and a machine without counters says so. NVIDIA GPUs through a library with NVML's functions
// (tests/support/fake_nvml.cpp, its counters set through the environment): GPUs add to RAPL, a GPU
// that cannot report energy is left out, and no driver is a reason, not a number.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "util/energy_meter.h"

namespace retort {
namespace {

namespace fs = std::filesystem;

class EnergyMeterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("retort-powercap-" + std::to_string(getpid()));
    fs::remove_all(root_);
    zone("intel-rapl:0", "package-0", 1'000'000, 2'000'000);
    zone("intel-rapl:0:0", "core", 500'000, 2'000'000);
    zone("intel-rapl:0:1", "dram", 100'000, 2'000'000);
  }
  void TearDown() override {
    fs::remove_all(root_);
    unsetenv("FAKE_NVML_MILLIJOULES");
  }
  void zone(const std::string& id, const std::string& name, uint64_t energy, uint64_t range) {
    fs::create_directories(root_ / id);
    std::ofstream(root_ / id / "name") << name << "\n";
    std::ofstream(root_ / id / "max_energy_range_uj") << range << "\n";
    set(id, energy);
  }
  void set(const std::string& id, uint64_t energy) { std::ofstream(root_ / id / "energy_uj") << energy << "\n"; }
  fs::path root_;
};

TEST_F(EnergyMeterTest, PackagesAndDramAddUpAndWrapsAreAllowedFor) {
  EnergyMeter meter(root_.string(), "");
  ASSERT_TRUE(meter.available()) << meter.why_not();
  EXPECT_EQ(meter.domain_names(), (std::vector<std::string>{"package-0", "dram"}));
  EXPECT_DOUBLE_EQ(meter.joules(), 0.0);
  set("intel-rapl:0", 1'500'000);   // +0.5 J
  set("intel-rapl:0:0", 900'000);   // core: inside the package's figure, not added
  set("intel-rapl:0:1", 350'000);   // +0.25 J
  EXPECT_DOUBLE_EQ(meter.joules(), 0.75);
  set("intel-rapl:0", 200'000);     // wrapped at 2,000,000: +0.7 J
  EXPECT_DOUBLE_EQ(meter.joules(), 1.45);
}

TEST_F(EnergyMeterTest, NoCountersSaySoInsteadOfANumber) {
  EnergyMeter none((root_ / "absent").string(), (root_ / "absent" / "libnvidia-ml.so.1").string());
  EXPECT_FALSE(none.available());
  EXPECT_NE(none.why_not().find("no RAPL energy counters"), std::string::npos) << none.why_not();
  EXPECT_NE(none.why_not().find("no NVIDIA driver"), std::string::npos) << none.why_not();
  EXPECT_DOUBLE_EQ(none.joules(), 0.0);
}

TEST_F(EnergyMeterTest, GpusFromNvmlAddToTheCpuCounters) {
  setenv("FAKE_NVML_MILLIJOULES", "5000,x,70000", 1);  // the second GPU cannot report energy
  EnergyMeter meter(root_.string(), RETORT_FAKE_NVML);
  ASSERT_TRUE(meter.available()) << meter.why_not();
  EXPECT_EQ(meter.domain_names(), (std::vector<std::string>{"package-0", "dram", "gpu0", "gpu2"}));
  EXPECT_DOUBLE_EQ(meter.joules(), 0.0);
  setenv("FAKE_NVML_MILLIJOULES", "5250,x,71000", 1);  // +0.25 J and +1 J
  set("intel-rapl:0", 1'500'000);                      // +0.5 J
  EXPECT_DOUBLE_EQ(meter.joules(), 1.75);
}

TEST_F(EnergyMeterTest, GpusAloneAreAMeasurement) {
  setenv("FAKE_NVML_MILLIJOULES", "1000", 1);
  EnergyMeter meter((root_ / "absent").string(), RETORT_FAKE_NVML);
  ASSERT_TRUE(meter.available());
  EXPECT_TRUE(meter.why_not().empty()) << meter.why_not();
  setenv("FAKE_NVML_MILLIJOULES", "4000", 1);
  EXPECT_DOUBLE_EQ(meter.joules(), 3.0);
}

TEST_F(EnergyMeterTest, ADriverWithoutGpusIsAReason) {
  unsetenv("FAKE_NVML_MILLIJOULES");
  EnergyMeter meter((root_ / "absent").string(), RETORT_FAKE_NVML);
  EXPECT_FALSE(meter.available());
  EXPECT_NE(meter.why_not().find("NVML sees no GPU"), std::string::npos) << meter.why_not();
}

}  // namespace
}  // namespace retort
