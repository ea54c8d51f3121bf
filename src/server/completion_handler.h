#pragma once
// POST /v1/chat/completions and /v1/completions: validate, tokenize, submit to the scheduler, then
// stream the engine's events back (SSE, or one JSON body). A client that goes away cancels its
// sequence: a failed write (tokens, or a keep-alive while the request waits) cancels the stream.
#include <atomic>
#include <string>

#include <httplib.h>

#include "server/access_log.h"
#include "server/http_server.h"
#include "server/metrics.h"
#include "server/model_residency.h"
#include "server/openai_response.h"
#include "server/served_models.h"

namespace retort::server {

struct CompletionServices {
  const ServerOptions* options = nullptr;
  ServedModels models;  // a request's `model` field picks one (ServedModels::route)
  // With --max-memory: loads the picked model and holds it for the request; null: all are loaded.
  ModelResidency* residency = nullptr;
  ServerMetrics* metrics = nullptr;
  AccessLog* access_log = nullptr;
  const std::atomic<bool>* shutting_down = nullptr;
};

// Fills `response` (status, headers, and a content provider that streams the result). Throws
// ApiError for anything the request got wrong or the server cannot take now.
void handle_completion(Endpoint endpoint, const httplib::Request& request, httplib::Response& response,
                       const std::string& request_id, CompletionServices& services);

// A random id suffix ("chatcmpl-" + this).
std::string random_id();
uint64_t random_seed();

}  // namespace retort::server
