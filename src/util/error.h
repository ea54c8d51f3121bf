#pragma once
// One error type for everything a user can cause (bad files, bad flags, bad requests).
// The message says what was expected, what was found and what to do; the CLI prints it as one
// line and exits non-zero, the server maps `kind` to an HTTP status.
#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace retort {

enum class ErrorKind {
  InvalidInput,    // malformed file, flag, config or request
  NotFound,        // a file, tensor or model that is not there
  Unsupported,     // valid but not something retort implements (e.g. an architecture)
  OutOfRange,      // a number past a limit (context length, token id)
  Io,              // the operating system refused (open, read, write, mmap)
  Internal,        // a bug in retort: report it
};

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, std::string message) : std::runtime_error(std::move(message)), kind_(kind) {}
  ErrorKind kind() const { return kind_; }

 private:
  ErrorKind kind_;
};

template <typename... Args>
[[noreturn]] void fail(ErrorKind kind, fmt::format_string<Args...> format, Args&&... args) {
  throw Error(kind, fmt::format(format, std::forward<Args>(args)...));
}

// For conditions that user input can violate; never compiled out (unlike assert).
template <typename... Args>
void require(bool condition, ErrorKind kind, fmt::format_string<Args...> format, Args&&... args) {
  if (!condition) throw Error(kind, fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace retort
