#include "test_support.h"

#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <cstring>

#include <nlohmann/json.hpp>

#include "util/mapped_file.h"

namespace retort::test {

CommandResult run_command(const std::string& command) {
  CommandResult result;
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return result;
  std::array<char, 4096> buffer{};
  size_t n;
  while ((n = std::fread(buffer.data(), 1, buffer.size(), pipe)) > 0) result.output.append(buffer.data(), n);
  int status = ::pclose(pipe);
  result.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

GoldenFixture read_golden_fixture(const std::string& dir) {
  GoldenFixture fixture;
  const auto expected = nlohmann::json::parse(read_text_file(dir + "/expected.json"));
  fixture.prompt = expected["prompt_tokens"].get<std::vector<int32_t>>();
  fixture.greedy = expected["greedy_tokens"].get<std::vector<int32_t>>();
  fixture.logits_std = expected["logits_std"].get<double>();
  MappedFile logits(dir + "/logits.f32");
  fixture.logits.resize(logits.size() / sizeof(float));
  std::memcpy(fixture.logits.data(), logits.data(), logits.size());
  return fixture;
}

}  // namespace retort::test
