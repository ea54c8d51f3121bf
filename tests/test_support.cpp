#include "test_support.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstring>
#include <thread>

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

std::string mpirun_prefix(int ranks, const std::string& env) {
#if defined(__SANITIZE_ADDRESS__)
  // Open MPI keeps allocations from MPI_Init until exit, many in components it has unloaded by then,
  // whose frames LeakSanitizer can neither name nor suppress: the ranks of an AddressSanitizer build run
  // without leak checks and with every other check; the single-process runs of the same tests keep them.
  const std::string sanitizer = "ASAN_OPTIONS=\"$ASAN_OPTIONS:detect_leaks=0\" ";
#else
  const std::string sanitizer;
#endif
  // vader's single-copy mode needs ptrace rights that containers usually lack; plain copies work anywhere.
  return "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl_vader_single_copy_mechanism=none " +
         sanitizer + env + " timeout 120 mpirun -np " + std::to_string(ranks) + " --oversubscribe ";
}

bool kill_retort_when(const std::vector<std::string>& args, const std::function<bool()>& ready,
                      std::chrono::seconds timeout) {
  std::vector<char*> argv{const_cast<char*>("retort")};
  for (const std::string& arg : args) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);
  const pid_t pid = fork();
  if (pid < 0) return false;
  if (pid == 0) {
    if (std::freopen("/dev/null", "w", stderr) == nullptr) _exit(126);
    execv(retort_binary().c_str(), argv.data());
    _exit(127);
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!ready() && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
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
