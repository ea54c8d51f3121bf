#include "util/input_limits.h"

#include <fmt/format.h>

#include "util/error.h"

namespace retort {

std::string echo_excerpt(std::string_view text, size_t max_bytes) {
  if (text.size() <= max_bytes) return std::string(text);
  size_t cut = max_bytes;
  // Back up over UTF-8 continuation bytes so the excerpt stays valid UTF-8.
  while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;
  return fmt::format("{}... ({} bytes)", text.substr(0, cut), text.size());
}

nlohmann::json parse_json_bounded(std::string_view text, const std::string& what) {
  using nlohmann::json;
  // `depth` is the number of arrays/objects enclosing the one that starts.
  const json::parser_callback_t limit = [&what](int depth, json::parse_event_t event, json&) {
    if ((event == json::parse_event_t::object_start || event == json::parse_event_t::array_start) &&
        depth >= kMaxInputNesting) {
      fail(ErrorKind::InvalidInput, "{} nests arrays/objects more than {} levels deep; that is not a file retort "
           "reads (corrupt or crafted input)", what, kMaxInputNesting);
    }
    return true;
  };
  return json::parse(text, limit);
}

void refuse_non_integer(const nlohmann::json& value, const char* key) {
  throw nlohmann::json::type_error::create(
      302, "'" + std::string(key) + "' must be an integer, got " + echo_excerpt(value.dump()), nullptr);
}

}  // namespace retort
