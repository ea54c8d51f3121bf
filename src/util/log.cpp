#include "util/log.h"

#include <unistd.h>

#include <spdlog/sinks/stdout_color_sinks.h>

namespace retort {

bool stderr_is_terminal() { return ::isatty(STDERR_FILENO) == 1; }
bool stdout_is_terminal() { return ::isatty(STDOUT_FILENO) == 1; }

void init_logging(bool verbose) {
  // Colour only when stderr is a terminal (automatic mode checks isatty).
  auto logger = spdlog::stderr_color_mt("retort", spdlog::color_mode::automatic);
  logger->set_pattern("%^%l%$: %v");
  logger->set_level(verbose ? spdlog::level::debug : spdlog::level::info);
  spdlog::set_default_logger(logger);
}

}  // namespace retort
