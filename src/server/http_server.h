#pragma once
// The OpenAI-compatible HTTP front of `retort serve` (cpp-httplib): routes, auth, limits, CORS,
// SSE streaming, metrics and the access log. HTTP threads validate requests into typed structs
// and talk to the engine's Scheduler only through submit() and RequestStream.
//
// The server listens before the model is loaded (so /health can say "loading"); attach() makes it
// ready. Defaults are safe: 127.0.0.1, a body size limit, a max_tokens cap, no CORS.
#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/scheduler.h"
#include "server/openai_request.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace retort::server {

class ModelResidency;

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;                        // 0: any free port (printed at start)
  std::string model_name;                 // the id /v1/models reports; empty: the model file's name
  std::vector<std::string> api_keys;      // empty: no auth; otherwise "Authorization: Bearer <key>"
  size_t max_body_bytes = 1 << 20;
  RequestLimits limits;
  double request_timeout_seconds = 600;   // generation ends (finish_reason "length") after this
  std::string cors_origin;                // empty: CORS off; "*" or an origin to allow
  bool reasoning_inline = false;          // keep <think>…</think> in content instead of reasoning_content
  int http_threads = 0;                   // connections served at once; 0: 64
  double shutdown_grace_seconds = 30;     // in-flight requests may finish for this long on SIGTERM
  std::string access_log = "-";           // file for the JSON access log; "-" stderr; "" off
  bool web_ui = true;                     // serve the chat page at GET /
};

// A loaded model, as the server needs it. Pointers stay valid until stop().
struct ServingModel {
  Scheduler* scheduler = nullptr;
  const Tokenizer* tokenizer = nullptr;
  std::optional<ChatTemplateKind> chat_template;  // none: chat requests are refused (400)
  std::string model_name;  // the id clients send; for one model, ServerOptions::model_name wins when set
};

class HttpServer {
 public:
  explicit HttpServer(ServerOptions options);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds host:port (throws retort::Error when it cannot); returns the port bound.
  int bind();
  // Serves until stop(); call from its own thread, then wait_until_serving() before relying on
  // stop() (httplib ignores a stop that comes before its loop has started).
  void serve();
  void wait_until_serving() const;
  // Makes the server ready with these models; call once, after all are loaded. One model is named
  // ServerOptions::model_name when that is set; several keep their own names, which must be distinct
  // (throws retort::Error otherwise).
  void attach(std::vector<ServingModel> models);
  void attach(ServingModel model) { attach(std::vector<ServingModel>{std::move(model)}); }
  // Makes the server ready with models loaded on first use under a memory budget (--max-memory);
  // the residency's names must be distinct. It must outlive the HTTP threads (stop() and join).
  void attach(std::shared_ptr<ModelResidency> residency);
  // New requests get 503 from now on; in-flight ones continue.
  void begin_shutdown();
  void stop();
  bool ready() const { return ready_.load(); }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::atomic<bool> ready_{false};
};

// Constant-time comparison of a presented key with the configured one (no early exit on the first
// differing byte, so response timing does not reveal how much of a guess was right).
bool constant_time_equal(const std::string& a, const std::string& b);

}  // namespace retort::server
