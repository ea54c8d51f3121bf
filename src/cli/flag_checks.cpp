#include "cli/flag_checks.h"

#include <fmt/format.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <limits>

#include "util/input_limits.h"

namespace retort::cli {

namespace {

std::string suffix(const std::string& meaning) { return meaning.empty() ? "" : " (" + meaning + ")"; }

}  // namespace

CLI::Validator integer_in(long long low, long long high, const std::string& meaning) {
  const std::string range = high == std::numeric_limits<long long>::max() ? fmt::format("at least {}", low)
                                                                          : fmt::format("from {} to {}", low, high);
  return CLI::Validator(
      [low, high, range, meaning](std::string& input) -> std::string {
        char* end = nullptr;
        errno = 0;
        const long long value = std::strtoll(input.c_str(), &end, 10);
        if (input.empty() || *end != '\0' || errno != 0 || value < low || value > high) {
          return fmt::format("expected a whole number {}{}, got '{}'", range, suffix(meaning), echo_excerpt(input, 40));
        }
        return {};
      },
      "INT " + range);
}

CLI::Validator integer_at_least(long long low, const std::string& meaning) {
  return integer_in(low, std::numeric_limits<long long>::max(), meaning);
}

CLI::Validator number_in(double low, double high, const std::string& meaning) {
  const std::string range = fmt::format("from {} to {}", low, high);
  return CLI::Validator(
      [low, high, range, meaning](std::string& input) -> std::string {
        char* end = nullptr;
        const double value = std::strtod(input.c_str(), &end);
        if (input.empty() || *end != '\0' || !std::isfinite(value) || value < low || value > high) {
          return fmt::format("expected a number {}{}, got '{}'", range, suffix(meaning), echo_excerpt(input, 40));
        }
        return {};
      },
      "NUMBER " + range);
}

}  // namespace retort::cli
