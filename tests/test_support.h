#pragma once
// Helpers shared by the tests: where ../shared and the fetched tokenizers are, and how to skip
// (or, under CI=true, fail) when they are absent.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace retort::test {

inline std::string source_dir() { return RETORT_SOURCE_DIR; }
inline std::string retort_binary() { return RETORT_BINARY; }

inline std::string shared_dir() {
  if (const char* env = std::getenv("RETORT_SHARED_DIR")) return env;
  return (std::filesystem::path(RETORT_SOURCE_DIR) / ".." / "shared").lexically_normal().string();
}

inline bool running_in_ci() {
  const char* ci = std::getenv("CI");
  return ci != nullptr && std::string(ci) == "true";
}

// Resolves a path under ../shared; empty when absent (the caller then skips via the macro below).
inline std::string shared_path(const std::string& relative) {
  auto path = std::filesystem::path(shared_dir()) / relative;
  return std::filesystem::exists(path) ? path.string() : std::string();
}

// Real tokenizer files fetched by scripts/fetch-tokenizers.sh (qwen, llama3, deepseek-v3).
inline std::string cached_tokenizer(const std::string& name) {
  auto path = std::filesystem::path(RETORT_SOURCE_DIR) / ".cache" / "tokenizers" / name / "tokenizer.json";
  return std::filesystem::exists(path) ? path.string() : std::string();
}

// Runs a shell command, returns its exit status and captured stdout.
struct CommandResult {
  int status = -1;
  std::string output;
};
CommandResult run_command(const std::string& command);

// The start of a command line that runs `ranks` processes under Open MPI's mpirun on this machine:
// more ranks than cores allowed (--oversubscribe), root allowed (containers, CI) through Open MPI's
// two variables, a 2-minute limit so a hung job fails the test instead of the suite. Append the
// program and its arguments. `env` goes before mpirun (e.g. "RETORT_RANKS_PER_NODE=2").
std::string mpirun_prefix(int ranks, const std::string& env = "");

// "tiny-r1-qwen" → "tiny_r1_qwen": a fixture's name as a gtest parameter name (letters, digits, _).
template <typename Param>
std::string fixture_test_name(const testing::TestParamInfo<Param>& info) {
  std::string name = info.param;
  for (char& c : name)
    if (c == '-') c = '_';
  return name;
}

// Starts `retort ARGS...` (its stderr discarded) and SIGKILLs it as soon as `ready()` holds,
// polling every 200 µs for at most `timeout`. True when the signal ended it; false when it had
// exited on its own first (then the caller's kill came too late to test anything).
bool kill_retort_when(const std::vector<std::string>& args, const std::function<bool()>& ready,
                      std::chrono::seconds timeout = std::chrono::seconds(120));

// A golden fixture's expected outputs (`expected.json` and `logits.f32` in
// ../shared/fixtures/<name>/, see its README).
struct GoldenFixture {
  std::vector<int32_t> prompt;
  std::vector<int32_t> greedy;
  std::vector<float> logits;  // [prompt × vocab], little-endian f32
  double logits_std = 0;
};
GoldenFixture read_golden_fixture(const std::string& dir);

}  // namespace retort::test

// Skips the test when a needed file is absent, except under CI=true, where absence is a failure.
#define RETORT_REQUIRE_PATH(path, what)                                                          \
  do {                                                                                           \
    if ((path).empty()) {                                                                        \
      if (::retort::test::running_in_ci()) FAIL() << (what) << " is missing (CI=true)";          \
      GTEST_SKIP() << (what) << " not found; run scripts/setup.sh and keep ../shared beside the " \
                                "checkout";                                                      \
    }                                                                                            \
  } while (0)
