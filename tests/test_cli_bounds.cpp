// Command-line mistakes through the real binary (issue 17, classes 10 and 7): out-of-range numbers
// are refused with the range in plain numbers (not a 309-digit bound), an unknown subcommand is
// named with the list of subcommands, output lost to a full device is a non-zero exit, thread
// counts are capped, and a thread the system will not start is a clean error.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <thread>

#include "test_support.h"

namespace retort {
namespace {

test::CommandResult retort(const std::string& arguments) {
  return test::run_command("'" + test::retort_binary() + "' " + arguments + " 2>&1");
}

void expect_refused(const std::string& arguments, const std::string& fragment) {
  const auto result = retort(arguments);
  EXPECT_NE(result.status, 0) << arguments << "\n" << result.output;
  EXPECT_NE(result.output.find(fragment), std::string::npos) << arguments << "\n" << result.output;
  EXPECT_EQ(result.output.find("17976931348623157"), std::string::npos) << result.output;  // DBL_MAX's digits
  EXPECT_EQ(result.output.find("internal"), std::string::npos) << result.output;
}

TEST(CliBounds, OutOfRangeNumbersAreRefusedWithThePlainRange) {
  expect_refused("run no-model -p hi --ctx 0", "at least 1");
  expect_refused("run no-model -p hi --threads -1", "at least 0");
  expect_refused("run no-model -p hi --temperature -1", "from 0 to 2");
  expect_refused("logits no-model --tokens t --out o --generate -2", "at least 0");
  expect_refused("serve no-model --port 99999", "from 0 to 65535");
  expect_refused("serve no-model --max-body 0", "from 1 to");
  expect_refused("serve no-model --timeout -1", "from 0 to");
  expect_refused("eval perplexity no-model --file f --chunks -3", "at least 0");
  expect_refused("convert no-model -o out.gguf --threads -4", "at least 0");
}

TEST(CliBounds, AnUnknownSubcommandIsNamedWithTheList) {
  const auto result = retort("frobnicate --x");
  EXPECT_EQ(result.status, 1) << result.output;
  EXPECT_NE(result.output.find("unknown subcommand 'frobnicate'"), std::string::npos) << result.output;
  for (const char* name : {"run", "serve", "convert", "train"}) {
    EXPECT_NE(result.output.find(name), std::string::npos) << result.output;
  }
}

TEST(CliBounds, OutputLostToAFullDeviceIsANonZeroExit) {
  if (!std::filesystem::exists("/dev/full")) GTEST_SKIP() << "no /dev/full";
  // stderr to the pipe, stdout to the full device.
  const std::string binary = "'" + test::retort_binary() + "'";
  const auto doctor = test::run_command(binary + " doctor 2>&1 >/dev/full");
  EXPECT_EQ(doctor.status, 1) << doctor.output;
  EXPECT_NE(doctor.output.find("standard output"), std::string::npos) << doctor.output;
  const auto model = test::shared_path("fixtures/tiny-r1-qwen");
  RETORT_REQUIRE_PATH(model, "fixture tiny-r1-qwen");
  const auto run = test::run_command(binary + " run '" + model + "' --raw -p hi -n 2 -q -t 1 2>&1 >/dev/full");
  EXPECT_EQ(run.status, 1) << run.output;
}

TEST(CliBounds, AnOutOfRangeChatSettingKeepsTheChatGoing) {
  const auto model = test::shared_path("fixtures/tiny-r1-qwen");
  RETORT_REQUIRE_PATH(model, "fixture tiny-r1-qwen");
  const std::string input = "/set top_p 7\\n/set temperature -1\\n/set temperature 0.5\\n/exit\\n";
  const auto chat = test::run_command("printf '" + input + "' | '" + test::retort_binary() + "' chat '" + model +
                                      "' --template deepseek-r1 -t 1 2>&1");
  EXPECT_EQ(chat.status, 0) << chat.output;
  EXPECT_NE(chat.output.find("top_p must be in (0, 1], got 7; unchanged"), std::string::npos) << chat.output;
  EXPECT_NE(chat.output.find("temperature must be 0 (greedy) or positive"), std::string::npos) << chat.output;
  EXPECT_NE(chat.output.find("temperature = 0.5"), std::string::npos) << chat.output;
}

// A FIFO as the model path waited for a writer forever; --generate past the model's positions
// failed only after generating (without printing the ids).
TEST(CliBounds, AFifoModelAndTooManyGeneratedIdsAreRefusedAtOnce) {
  std::string dir = (std::filesystem::temp_directory_path() / "retort-bounds-XXXXXX").string();
  ASSERT_NE(::mkdtemp(dir.data()), nullptr);
  const std::string fifo = dir + "/model.gguf";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  const auto run = test::run_command("timeout 30 '" + test::retort_binary() + "' run '" + fifo + "' -p hi 2>&1");
  EXPECT_EQ(run.status, 1) << run.output;
  EXPECT_NE(run.output.find("is not a regular file"), std::string::npos) << run.output;
  const auto model = test::shared_path("fixtures/tiny-r1-qwen");
  if (!model.empty()) {
    const std::string tokens = dir + "/tokens.txt";
    test::run_command("echo 1 2 3 > '" + tokens + "'");
    const auto logits = test::run_command("timeout 60 '" + test::retort_binary() + "' logits '" + model +
                                          "' --tokens '" + tokens + "' --out '" + dir +
                                          "/out.f32' --generate 100000 -t 1 2>&1");
    EXPECT_EQ(logits.status, 1) << logits.output;
    EXPECT_NE(logits.output.find("lower --generate to at most"), std::string::npos) << logits.output;
    EXPECT_FALSE(std::filesystem::exists(dir + "/out.f32"));
  }
  std::filesystem::remove_all(dir);
}

TEST(CliBounds, ThreadsAreCappedAtAMultipleOfTheHardwareThreads) {
  const unsigned hardware = std::max(1u, std::thread::hardware_concurrency());
  const auto result = retort("convert no-model -o out.gguf --threads " + std::to_string(hardware * 4 + 1));
  EXPECT_EQ(result.status, 1) << result.output;
  EXPECT_NE(result.output.find("threads requested, but this machine has " + std::to_string(hardware)),
            std::string::npos)
      << result.output;
}

// A thread the system refuses: each thread's stack is RLIMIT_STACK (1 GB here) and the address
// space is limited to 3 GB, so the second or third worker cannot start.
TEST(CliBounds, AThreadThatCannotStartIsACleanError) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "a sanitizer build reserves terabytes of shadow address space at start, so no program of it "
                  "can run under `ulimit -v`; the release suite runs this test";
#endif
  const unsigned hardware = std::max(1u, std::thread::hardware_concurrency());
  if (hardware * 4 < 4) GTEST_SKIP();
  const auto result = test::run_command("(ulimit -s 1000000 && ulimit -v 3000000 && OPENBLAS_NUM_THREADS=1 '" +
                                        test::retort_binary() + "' convert no-model -o out.gguf --threads " +
                                        std::to_string(hardware * 4) + ") 2>&1");
  EXPECT_EQ(result.status, 1) << result.output;
  EXPECT_NE(result.output.find("cannot start thread"), std::string::npos) << result.output;
}

}  // namespace
}  // namespace retort
