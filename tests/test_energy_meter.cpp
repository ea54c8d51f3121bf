// EnergyMeter on a powercap tree laid out in a temporary directory like /sys/class/powercap: package
// and DRAM domains add up, core subdomains are not counted twice, a wrapped counter is allowed for,
// and a machine without counters says so. NVIDIA GPUs through a library with NVML's functions
// (tests/support/fake_nvml.cpp, its counters set through the environment): GPUs add to RAPL, a GPU
// that cannot report energy is left out, and no driver is a reason, not a number. Ascend NPUs through
// a script standing in for npu-smi (its watts read from a file the test writes): the draw integrated
// over time, a device without a figure left out.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

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

TEST(NpuSmiPower, ReadsEitherPowerLineAndNothingElse) {
  EXPECT_EQ(parse_npu_smi_power("        NPU ID                         : 0\n"
                                "        Chip Count                     : 1\n\n"
                                "        Power Dissipation(W)           : 67.9\n"),
            67.9);
  EXPECT_EQ(parse_npu_smi_power("Real-time Power(W) : 212\n"), 212.0);
  EXPECT_EQ(parse_npu_smi_power("Error: the device 9 does not exist.\n"), std::nullopt);
  EXPECT_EQ(parse_npu_smi_power(""), std::nullopt);
}

// npu-smi's stand-in: device 0 draws what the file `watts` says; device 1 answers with an error.
class NpuPowerTest : public EnergyMeterTest {
 protected:
  void SetUp() override {
    EnergyMeterTest::SetUp();
    script_ = root_ / "npu-smi";
    std::ofstream(script_) << "#!/bin/sh\n"
                           << "[ \"$5\" = 0 ] || { echo 'Error: the device does not exist.'; exit 1; }\n"
                           << "printf '        Power Dissipation(W)           : %s\\n' \"$(cat " << (root_ / "watts").string() << ")\"\n";
    fs::permissions(script_, fs::perms::owner_all);
    watts(50);
  }
  void watts(int value) { std::ofstream(root_ / "watts") << value << "\n"; }
  fs::path script_;
};

TEST_F(NpuPowerTest, TheDrawIsIntegratedOverTime) {
  using Clock = std::chrono::steady_clock;
  const auto before = Clock::now();
  NpuPowerSampler sampler({script_.string(), {0, 1}}, std::chrono::milliseconds(20));
  const auto started = Clock::now();
  ASSERT_EQ(sampler.device_count(), 1u) << sampler.why_not();
  EXPECT_EQ(sampler.device_name(0), "npu0");
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  const auto asked = Clock::now();
  const double joules = sampler.joules(0);
  const auto answered = Clock::now();
  // A constant 50 W from the first sample (taken in the constructor) to the read.
  const auto seconds = [](auto a, auto b) { return std::chrono::duration<double>(b - a).count(); };
  EXPECT_GE(joules, 50 * seconds(started, asked) - 1e-9);
  EXPECT_LE(joules, 50 * seconds(before, answered) + 1e-9);
  // At 200 W the energy grows four times as fast once the sampler has seen it.
  watts(200);
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  const double at_200 = sampler.joules(0);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  const double growth = sampler.joules(0) - at_200;
  EXPECT_GT(growth, 200 * 0.2 * 0.9);
  EXPECT_LT(growth, 200 * 0.2 * 1.5);
}

TEST_F(NpuPowerTest, NpusAddToTheMeterAndAnAbsentToolIsAReason) {
  EnergyMeter meter((root_ / "absent").string(), "", {script_.string(), {0, 1}});
  ASSERT_TRUE(meter.available()) << meter.why_not();
  EXPECT_EQ(meter.domain_names(), std::vector<std::string>{"npu0"});
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_GT(meter.joules(), 0.0);
  EnergyMeter none((root_ / "absent").string(), "", {(root_ / "no-such-npu-smi").string(), {0}});
  EXPECT_FALSE(none.available());
  EXPECT_NE(none.why_not().find("gave no power figure"), std::string::npos) << none.why_not();
}

}  // namespace
}  // namespace retort
