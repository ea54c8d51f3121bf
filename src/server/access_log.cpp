#include "server/access_log.h"

#include <chrono>
#include <cmath>

#include <fmt/chrono.h>

#include "util/error.h"

namespace retort::server {

AccessLog::AccessLog(const std::string& destination) {
  if (destination.empty()) return;
  if (destination == "-") {
    file_ = stderr;
    return;
  }
  file_ = std::fopen(destination.c_str(), "a");
  require(file_ != nullptr, ErrorKind::Io, "cannot open the access log '{}' for appending; check the path", destination);
  owns_file_ = true;
}

AccessLog::~AccessLog() {
  if (owns_file_) std::fclose(file_);
}

void AccessLog::write(const AccessRecord& record) {
  if (file_ == nullptr) return;
  auto round_ms = [](double seconds) { return std::round(seconds * 1e6) / 1e3; };
  nlohmann::json line = {
      {"time", fmt::format("{:%Y-%m-%dT%H:%M:%S}Z", fmt::gmtime(std::chrono::system_clock::to_time_t(std::chrono::system_clock::now())))},
      {"id", record.id},
      {"method", record.method},
      {"path", record.path},
      {"remote", record.remote},
      {"status", record.status},
      {"prompt_tokens", record.prompt_tokens},
      {"completion_tokens", record.completion_tokens},
      {"ttft_ms", record.ttft_seconds < 0 ? nlohmann::json(nullptr) : nlohmann::json(round_ms(record.ttft_seconds))},
      {"duration_ms", round_ms(record.duration_seconds)}};
  if (!record.finish_reason.empty()) line["finish_reason"] = record.finish_reason;
  const std::string text = line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  std::lock_guard lock(mutex_);
  std::fwrite(text.data(), 1, text.size(), file_);
  std::fflush(file_);
}

}  // namespace retort::server
