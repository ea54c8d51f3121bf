#pragma once
// The chat page served at GET /: one self-contained HTML document (no external scripts, styles or
// fonts, no build step) that talks to /v1/chat/completions with streaming.
#include <string_view>

namespace retort::server {

std::string_view chat_page_html();

}  // namespace retort::server
