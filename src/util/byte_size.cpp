#include "util/byte_size.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>

#include "util/error.h"
#include "util/input_limits.h"

namespace retort {

namespace {

struct ByteUnit {
  std::string_view name;
  uint64_t bytes;
};

constexpr ByteUnit kUnits[] = {{"b", 1},
                               {"kib", uint64_t{1} << 10},
                               {"mib", uint64_t{1} << 20},
                               {"gib", uint64_t{1} << 30},
                               {"tib", uint64_t{1} << 40}};

std::string lower_ascii(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

std::string_view trim_spaces(std::string_view text) {
  while (!text.empty() && text.front() == ' ') text.remove_prefix(1);
  while (!text.empty() && text.back() == ' ') text.remove_suffix(1);
  return text;
}

}  // namespace

uint64_t parse_byte_size(std::string_view text, std::string_view what) {
  const std::string_view trimmed = trim_spaces(text);
  auto refuse = [&]() -> uint64_t {
    fail(ErrorKind::InvalidInput,
         "{} expects a size such as 6GiB, 512MiB, 64KiB or a number of bytes (units B, KiB, MiB, GiB, TiB), "
         "got '{}'",
         what, echo_excerpt(text));
  };
  // Digits and at most one '.', then the unit.
  const size_t number_end = trimmed.find_first_not_of("0123456789.");
  const std::string_view number = trimmed.substr(0, number_end);
  const std::string unit = lower_ascii(trim_spaces(number_end == std::string_view::npos ? "" : trimmed.substr(number_end)));
  if (number.empty() || std::count(number.begin(), number.end(), '.') > 1 || number.front() == '.') return refuse();
  double value = 0;
  const auto [end, error] = std::from_chars(number.data(), number.data() + number.size(), value);
  if (error != std::errc() || end != number.data() + number.size()) return refuse();
  uint64_t scale = 1;
  if (!unit.empty()) {
    const auto* found = std::find_if(std::begin(kUnits), std::end(kUnits), [&](const ByteUnit& u) { return u.name == unit; });
    if (found == std::end(kUnits)) return refuse();
    scale = found->bytes;
  }
  const double bytes = std::floor(value * static_cast<double>(scale));
  require(bytes >= 1, ErrorKind::InvalidInput, "{} must be at least one byte, got '{}'", what, echo_excerpt(text));
  require(bytes < 9.2e18, ErrorKind::InvalidInput, "{} of '{}' is past 2^63 bytes; give a real memory size", what,
          echo_excerpt(text));
  return static_cast<uint64_t>(bytes);
}

std::string format_byte_size(uint64_t bytes) {
  const auto in = [&](int shift) { return static_cast<double>(bytes) / static_cast<double>(uint64_t{1} << shift); };
  if (bytes >= (uint64_t{1} << 40)) return fmt::format("{:.2f} TiB", in(40));
  if (bytes >= (uint64_t{1} << 30)) return fmt::format("{:.2f} GiB", in(30));
  if (bytes >= (uint64_t{1} << 20)) return fmt::format("{:.1f} MiB", in(20));
  if (bytes >= (uint64_t{1} << 10)) return fmt::format("{:.1f} KiB", in(10));
  return fmt::format("{} B", bytes);
}

}  // namespace retort
