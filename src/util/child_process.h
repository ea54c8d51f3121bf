#pragma once
// A child process that is never left behind. `retort tune serve` starts a server for every trial;
// each must be gone when its trial ends, when the search fails, when the user presses Ctrl-C and
// when retort itself is killed. So the child runs in its own process group (a Ctrl-C at the
// terminal reaches retort alone, which then stops the child in order instead of both racing),
// with SIGKILL as its parent-death signal (it dies with retort even when retort is SIGKILLed), and
// stop_children_on_termination_signals() makes SIGINT/SIGTERM/SIGHUP stop every live child before
// retort ends.
#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace retort {

class ChildProcess {
 public:
  // Runs argv[0] (a path) with `argv`; stdin is /dev/null, stdout and stderr go to `log_path`
  // (truncated). Throws an Io error when the program cannot be started.
  ChildProcess(const std::vector<std::string>& argv, const std::string& log_path);
  ~ChildProcess();  // stop() with a short grace
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const { return pid_; }
  // How it ended ("exited with status 1", "killed by signal 9 (Killed)") once it has; reaps it.
  std::optional<std::string> exited();
  // SIGTERM, up to `grace` for it to exit, then SIGKILL; reaps it and says how it ended.
  std::string stop(std::chrono::milliseconds grace);

 private:
  bool reap(int wait_flags);
  pid_t pid_ = -1;
  std::optional<std::string> ended_;
};

// Installs handlers for SIGINT, SIGTERM and SIGHUP that stop every live ChildProcess (SIGTERM, up
// to two seconds, then SIGKILL) and then end retort by the same signal, as if it had no handler.
// A signal that was ignored when retort started (nohup) is left ignored.
void stop_children_on_termination_signals();

}  // namespace retort
