#include "util/child_process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <thread>

#include <fmt/format.h>

#include "util/error.h"

namespace retort {
namespace {

// The live children, for the signal handler: a handler can neither lock nor allocate, so this is a
// fixed table of lock-free slots (0: free). retort runs one child at a time; 64 is ample.
std::array<std::atomic<pid_t>, 64> live_children{};

void remember_child(pid_t pid) {
  for (auto& slot : live_children) {
    pid_t expected = 0;
    if (slot.compare_exchange_strong(expected, pid)) return;
  }
  fail(ErrorKind::Internal, "more than {} child processes at once", live_children.size());
}

void forget_child(pid_t pid) {
  for (auto& slot : live_children) {
    pid_t expected = pid;
    if (slot.compare_exchange_strong(expected, 0)) return;
  }
}

std::string describe_wait_status(int status) {
  if (WIFEXITED(status)) return fmt::format("exited with status {}", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return fmt::format("killed by signal {} ({})", WTERMSIG(status), strsignal(WTERMSIG(status)));
  return fmt::format("ended with wait status {}", status);
}

// Runs in the forked child: only async-signal-safe calls until execv. On failure the errno goes
// back through `report_fd` (closed by a successful exec), so the parent can say why.
[[noreturn]] void exec_child(char* const argv[], int log_fd, int report_fd, pid_t parent) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent) _exit(127);  // the parent died before prctl took effect
  setpgid(0, 0);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  const int null_fd = open("/dev/null", O_RDONLY);
  if (null_fd < 0 || dup2(null_fd, 0) < 0 || dup2(log_fd, 1) < 0 || dup2(log_fd, 2) < 0) {
    const int error = errno;
    (void)!write(report_fd, &error, sizeof error);
    _exit(127);
  }
  execv(argv[0], argv);
  const int error = errno;
  (void)!write(report_fd, &error, sizeof error);
  _exit(127);
}

}  // namespace

ChildProcess::ChildProcess(const std::vector<std::string>& argv, const std::string& log_path) {
  require(!argv.empty(), ErrorKind::Internal, "a child process needs a program");
  std::vector<char*> arguments;
  for (const std::string& argument : argv) arguments.push_back(const_cast<char*>(argument.c_str()));
  arguments.push_back(nullptr);
  const int log_fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  require(log_fd >= 0, ErrorKind::Io, "cannot write the log file '{}': {}", log_path, std::strerror(errno));
  int report[2];
  if (pipe2(report, O_CLOEXEC) != 0) {
    close(log_fd);
    fail(ErrorKind::Io, "cannot start '{}': pipe: {}", argv[0], std::strerror(errno));
  }
  const pid_t parent = getpid();
  pid_ = fork();
  if (pid_ == 0) exec_child(arguments.data(), log_fd, report[1], parent);
  const int fork_error = errno;
  close(log_fd);
  close(report[1]);
  if (pid_ < 0) {
    close(report[0]);
    fail(ErrorKind::Io, "cannot start '{}': fork: {}", argv[0], std::strerror(fork_error));
  }
  remember_child(pid_);
  int exec_error = 0;
  const ssize_t got = read(report[0], &exec_error, sizeof exec_error);  // 0 bytes: exec succeeded
  close(report[0]);
  if (got > 0) {
    reap(0);
    fail(ErrorKind::Io, "cannot start '{}': {}", argv[0], std::strerror(exec_error));
  }
}

ChildProcess::~ChildProcess() { stop(std::chrono::seconds(2)); }

bool ChildProcess::reap(int wait_flags) {
  if (ended_) return true;
  int status = 0;
  pid_t got;
  do {
    got = waitpid(pid_, &status, wait_flags);
  } while (got < 0 && errno == EINTR);
  if (got == 0) return false;
  // got < 0 (ECHILD): the signal handler reaped it while retort was ending anyway.
  ended_ = got == pid_ ? describe_wait_status(status) : std::string("ended (reaped elsewhere)");
  forget_child(pid_);
  return true;
}

std::optional<std::string> ChildProcess::exited() {
  if (pid_ > 0) reap(WNOHANG);
  return ended_;
}

std::string ChildProcess::stop(std::chrono::milliseconds grace) {
  if (pid_ <= 0) return "not started";
  if (reap(WNOHANG)) return *ended_;
  kill(pid_, SIGTERM);
  const auto deadline = std::chrono::steady_clock::now() + grace;
  while (std::chrono::steady_clock::now() < deadline) {
    if (reap(WNOHANG)) return *ended_;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  kill(pid_, SIGKILL);
  reap(0);
  return *ended_;
}

namespace {

void pause_briefly() {
  const timespec twenty_ms{0, 20'000'000};
  nanosleep(&twenty_ms, nullptr);
}

// Async-signal-safe throughout: kill, waitpid, nanosleep, signal, raise and lock-free atomics.
void stop_children_and_end(int signal_number) {
  for (auto& slot : live_children)
    if (const pid_t pid = slot.load(); pid > 0) kill(pid, SIGTERM);
  for (int wait = 0; wait < 100; ++wait) {  // up to two seconds for them to finish in order
    bool any_alive = false;
    for (auto& slot : live_children) {
      const pid_t pid = slot.load();
      if (pid <= 0) continue;
      if (waitpid(pid, nullptr, WNOHANG) == 0) any_alive = true;
      else slot.store(0);
    }
    if (!any_alive) break;
    pause_briefly();
  }
  for (auto& slot : live_children) {
    if (const pid_t pid = slot.exchange(0); pid > 0) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
  }
  signal(signal_number, SIG_DFL);
  raise(signal_number);  // delivered when the handler returns: retort ends as the signal says
}

}  // namespace

void stop_children_on_termination_signals() {
  struct sigaction action {};
  action.sa_handler = stop_children_and_end;
  sigemptyset(&action.sa_mask);
  for (int signal_number : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&action.sa_mask, signal_number);
  for (int signal_number : {SIGINT, SIGTERM, SIGHUP}) {
    // A signal ignored from the start stays ignored: `nohup` and background jobs of a
    // non-interactive shell rely on that.
    struct sigaction inherited {};
    sigaction(signal_number, nullptr, &inherited);
    if (inherited.sa_handler != SIG_IGN) sigaction(signal_number, &action, nullptr);
  }
}

}  // namespace retort
