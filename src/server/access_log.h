#pragma once
// One JSON line per finished request: id, method, path, status, tokens, time to first token and
// duration. Goes to a file, stderr ("-") or nowhere ("").
#include <cstdio>
#include <mutex>
#include <string>

#include <nlohmann/json.hpp>

namespace retort::server {

struct AccessRecord {
  std::string id;
  std::string method;
  std::string path;
  std::string remote;
  int status = 0;
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
  double ttft_seconds = -1;  // < 0: no token was produced
  double duration_seconds = 0;
  std::string finish_reason;  // empty for non-generation requests
};

class AccessLog {
 public:
  explicit AccessLog(const std::string& destination);
  ~AccessLog();
  AccessLog(const AccessLog&) = delete;
  AccessLog& operator=(const AccessLog&) = delete;
  void write(const AccessRecord& record);

 private:
  std::mutex mutex_;
  std::FILE* file_ = nullptr;
  bool owns_file_ = false;
};

}  // namespace retort::server
