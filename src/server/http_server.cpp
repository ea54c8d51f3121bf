#include "server/http_server.h"

#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <system_error>
#include <thread>

#include "server/access_log.h"
#include "server/api_error.h"
#include "server/completion_handler.h"
#include "server/metrics.h"
#include "server/model_residency.h"
#include "server/pipelined_http_server.h"
#include "server/web_page.h"
#include "util/error.h"
#include "util/log.h"

namespace retort::server {

bool constant_time_equal(const std::string& a, const std::string& b) {
  // Walk the presented key's full length whatever the stored one is, and fold every difference
  // (length included) into one accumulator, so timing depends only on the presented length.
  unsigned char difference = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < a.size(); ++i) {
    const unsigned char other = b.empty() ? 0 : static_cast<unsigned char>(b[i % b.size()]);
    difference |= static_cast<unsigned char>(static_cast<unsigned char>(a[i]) ^ other);
  }
  return difference == 0;
}

namespace {

// The connection threads. httplib's own pool std::terminate()s when the system refuses a thread
// (a joinable std::thread is destroyed while its constructor unwinds), and it starts them on the
// serving thread where nothing could catch the error anyway. This one is built in bind(), on the
// caller's thread, and turns a refused thread into a retort::Error after joining those it started.
//
// httplib 0.11 gives each connection a thread for as long as it is open, so idle keep-alive or
// slow clients occupy threads while they wait; with a fixed pool, 100 such connections stalled
// every real request for up to the keep-alive and read timeouts. When no thread is free, a new one
// is started (up to `max_count`; a sleeping connection thread costs a stack's worth of address
// space and little memory), so a real request is served while the others wait.
// Connections served at once when idle or slow ones hold the configured threads.
constexpr size_t kMaxConnectionThreads = 1024;

class ConnectionThreads : public httplib::TaskQueue {
 public:
  ConnectionThreads(size_t count, size_t max_count) : max_count_(std::max(count, max_count)) {
    try {
      for (size_t i = 0; i < count; ++i) threads_.emplace_back([this] { work(); });
    } catch (const std::system_error& error) {
      const size_t started = threads_.size();
      shutdown();
      fail(ErrorKind::Io,
           "cannot start HTTP thread {} of {}: {}; a limit on threads or memory applies (ulimit -u, a "
           "container's pids.max): lower --http-threads (and --parallel/--queue, which size its default)",
           started + 1, count, error.what());
    }
  }
  ~ConnectionThreads() override { shutdown(); }

  void enqueue(std::function<void()> task) override {
    {
      std::lock_guard lock(mutex_);
      tasks_.push_back(std::move(task));
      if (idle_ < tasks_.size() && threads_.size() < max_count_ && !stopping_) grow();
    }
    ready_.notify_one();
  }
  // Lets the queued connections finish, then joins the threads.
  void shutdown() override {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    ready_.notify_all();
    for (auto& thread : threads_) {
      if (thread.joinable()) thread.join();
    }
  }

 private:
  // Under mutex_. A thread the system refuses leaves the connection queued for a busy thread.
  void grow() {
    try {
      threads_.emplace_back([this] { work(); });
    } catch (const std::system_error& error) {
      if (!refused_logged_) spdlog::warn("cannot start another HTTP thread ({}); connections wait for one", error.what());
      refused_logged_ = true;
    }
  }

  void work() {
    for (;;) {
      std::function<void()> task;
      {
        std::unique_lock lock(mutex_);
        ++idle_;
        ready_.wait(lock, [this] { return stopping_ || !tasks_.empty(); });
        --idle_;
        if (tasks_.empty()) return;
        task = std::move(tasks_.front());
        tasks_.pop_front();
      }
      task();
    }
  }

  size_t max_count_;
  std::vector<std::thread> threads_;  // grows under mutex_, joined after stopping_ is set
  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<std::function<void()>> tasks_;
  size_t idle_ = 0;  // threads waiting for a connection
  bool stopping_ = false;
  bool refused_logged_ = false;
};

// The body limit, checked from the headers before httplib reads any of the body: httplib 0.11
// reads a chunked body whole whatever the limit (a 256 MiB body grew the server by 600 MB), and
// answers a Content-Length over the limit, or a negative one, with 413 only after its 30 s read
// timeout. Chunked request bodies are refused (411): every OpenAI client sends a Content-Length.
std::optional<ApiError> body_framing_error(const httplib::Request& request, size_t max_body_bytes) {
  if (request.has_header("Transfer-Encoding")) {
    return ApiError(411, "chunked request bodies are not accepted; send the body with a Content-Length header");
  }
  if (!request.has_header("Content-Length")) return std::nullopt;
  const std::string length = request.get_header_value("Content-Length");
  const bool digits = !length.empty() && length.size() <= 18 &&
                      std::all_of(length.begin(), length.end(), [](char c) { return c >= '0' && c <= '9'; });
  if (!digits) {
    return ApiError(400, fmt::format("Content-Length must be a non-negative whole number of bytes, got '{}'",
                                     length.substr(0, 40)));
  }
  if (std::stoull(length) > max_body_bytes) {
    return ApiError(413, fmt::format("the request body ({} bytes) is larger than the limit of {} bytes", length,
                                     max_body_bytes));
  }
  return std::nullopt;
}

// Connections the kernel queues before accept(): httplib listens with a backlog of 5, so bursts of
// clients got resets; bind() raises it to this (the kernel caps it at net.core.somaxconn).
constexpr int kListenBacklog = 1024;

}  // namespace

struct HttpServer::Impl {
  explicit Impl(ServerOptions o) : options(std::move(o)), access_log(options.access_log) {}

  ServerOptions options;
  PipelinedHttpServer http;  // httplib with a keep-alive loop that keeps pipelined requests
  ServerMetrics metrics;
  AccessLog access_log;
  std::atomic<bool> shutting_down{false};
  std::mutex model_mutex;
  CompletionServices services;  // model filled in by attach()
  std::shared_ptr<ModelResidency> residency;  // with --max-memory; services.residency points at it
  int64_t started = 0;
  size_t connection_threads = 64;
  std::unique_ptr<ConnectionThreads> prepared_threads;  // built by bind(), handed to httplib by serve()
  int listen_socket = -1;                                // the last socket httplib created for listening

  bool authorized(const httplib::Request& request) const;
  void install_routes(HttpServer& owner);
  void reply_error(const httplib::Request& request, httplib::Response& response, const ApiError& error,
                   const std::string& request_id);
  CompletionServices services_snapshot() {
    std::lock_guard lock(model_mutex);
    return services;
  }
};

bool HttpServer::Impl::authorized(const httplib::Request& request) const {
  if (options.api_keys.empty()) return true;
  const std::string header = request.get_header_value("Authorization");
  const std::string prefix = "Bearer ";
  if (header.size() <= prefix.size() || header.compare(0, prefix.size(), prefix) != 0) return false;
  const std::string presented = header.substr(prefix.size());
  bool match = false;
  for (const auto& key : options.api_keys) match = constant_time_equal(presented, key) || match;
  return match;
}

void HttpServer::Impl::reply_error(const httplib::Request& request, httplib::Response& response,
                                   const ApiError& error, const std::string& request_id) {
  response.status = error.status();
  response.set_content(error_body(error), "application/json");
  if (error.status() == 401) response.set_header("WWW-Authenticate", "Bearer");
  if (error.status() == 503) response.set_header("Retry-After", "5");
  metrics.count_request(request.path, error.status());
  AccessRecord record;
  record.id = request_id;
  record.method = request.method;
  record.path = request.path;
  record.remote = request.remote_addr;
  record.status = error.status();
  access_log.write(record);
}

namespace {

// Paths whose requests are counted and logged by the route itself (completions log when the
// stream ends).
bool logged_by_route(const std::string& path) {
  return path == "/v1/chat/completions" || path == "/v1/completions";
}

std::string unknown_model_message(const std::string& wanted, const ServedModels& models) {
  const std::string message = fmt::format("the model '{}' does not exist", wanted);
  // The single-model server's message is kept as it was.
  return models.all().size() > 1 ? message + "; this server serves " + models.quoted_names() : message;
}

// Under a memory budget a model may not be loaded: its context comes from its configuration, and
// two fields beyond OpenAI's say whether it is in memory and what it takes there.
nlohmann::json model_json(const NamedModel& served, int64_t created, const ModelResidency* residency) {
  if (residency == nullptr) {
    return {{"id", served.name}, {"object", "model"}, {"created", created}, {"owned_by", "retort"},
            {"context_length", served.model.scheduler->context()}};
  }
  const size_t index = residency->index_of(served.name);
  const OnDemandModel& model = residency->models()[index];
  return {{"id", served.name}, {"object", "model"}, {"created", created}, {"owned_by", "retort"},
          {"context_length", model.context}, {"loaded", residency->loaded(index)},
          {"memory_bytes", model.memory_bytes}};
}

std::vector<ModelEngineStats> engine_stats(const ServedModels& models, const ModelResidency* residency) {
  std::vector<ModelEngineStats> engines;
  for (size_t i = 0; i < models.all().size(); ++i) {
    const NamedModel& served = models.all()[i];
    engines.push_back({served.name, residency ? residency->engine_stats(i) : served.model.scheduler->stats()});
  }
  return engines;
}

}  // namespace

void HttpServer::Impl::install_routes(HttpServer& owner) {
  auto completion_route = [this, &owner](Endpoint endpoint) {
    return [this, &owner, endpoint](const httplib::Request& request, httplib::Response& response) {
      const std::string id = random_id();
      try {
        // attach() fills in the services once, before ready() turns true; after that they only
        // change by being read, and they outlive every response (the provider points at them).
        if (!owner.ready()) throw ApiError(503, "the model is still loading; retry shortly");
        handle_completion(endpoint, request, response, id, services);
      } catch (const ApiError& error) {
        reply_error(request, response, error, id);
      } catch (const Error& error) {
        reply_error(request, response, ApiError(error.kind() == ErrorKind::Internal ? 500 : 400, error.what()), id);
      } catch (const std::exception& error) {
        reply_error(request, response, ApiError(500, std::string("internal error: ") + error.what()), id);
      }
    };
  };
  http.Post("/v1/chat/completions", completion_route(Endpoint::ChatCompletions));
  http.Post("/v1/completions", completion_route(Endpoint::Completions));

  http.Get("/v1/models", [this, &owner](const httplib::Request& request, httplib::Response& response) {
    if (!owner.ready()) return reply_error(request, response, ApiError(503, "the model is still loading"), random_id());
    CompletionServices current = services_snapshot();
    nlohmann::json data = nlohmann::json::array();
    for (const auto& served : current.models.all()) data.push_back(model_json(served, started, current.residency));
    response.set_content(to_wire({{"object", "list"}, {"data", data}}), "application/json");
  });
  http.Get(R"(/v1/models/(.+))", [this, &owner](const httplib::Request& request, httplib::Response& response) {
    if (!owner.ready()) return reply_error(request, response, ApiError(503, "the model is still loading"), random_id());
    CompletionServices current = services_snapshot();
    const std::string wanted = request.matches[1];
    const NamedModel* served = current.models.find(wanted);
    if (served == nullptr) {
      return reply_error(request, response,
                         ApiError(404, unknown_model_message(wanted, current.models), "model", "model_not_found"),
                         random_id());
    }
    response.set_content(to_wire(model_json(*served, started, current.residency)), "application/json");
  });
  http.Get("/health", [this, &owner](const httplib::Request&, httplib::Response& response) {
    const char* status = shutting_down.load() ? "shutting_down" : owner.ready() ? "ok" : "loading";
    response.status = std::string(status) == "ok" ? 200 : 503;
    response.set_content(to_wire({{"status", status}}), "application/json");
  });
  http.Get("/metrics", [this, &owner](const httplib::Request&, httplib::Response& response) {
    CompletionServices current = services_snapshot();
    std::string text = metrics.render_models(engine_stats(current.models, current.residency),
                                             owner.ready() && !shutting_down.load());
    if (current.residency) text += render_residency(current.residency->residency_stats(), current.residency->budget_bytes());
    response.set_content(text, "text/plain; version=0.0.4; charset=utf-8");
  });
  if (options.web_ui) {
    http.Get("/", [](const httplib::Request&, httplib::Response& response) {
      response.set_header("Content-Security-Policy",
                          "default-src 'self'; style-src 'self' 'unsafe-inline'; script-src 'self' 'unsafe-inline'");
      const std::string_view page = chat_page_html();
      response.set_content(page.data(), page.size(), "text/html; charset=utf-8");
    });
  }
  if (!options.cors_origin.empty()) {
    http.Options(R"(/.*)", [](const httplib::Request&, httplib::Response& response) { response.status = 204; });
  }
}

HttpServer::HttpServer(ServerOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {
  Impl& impl = *impl_;
  impl.started = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  impl.services.options = &impl.options;
  impl.services.metrics = &impl.metrics;
  impl.services.access_log = &impl.access_log;
  impl.services.shutting_down = &impl.shutting_down;
  impl.connection_threads = static_cast<size_t>(impl.options.http_threads > 0 ? std::max(4, impl.options.http_threads) : 64);
  impl.http.new_task_queue = [&impl]() -> httplib::TaskQueue* {
    if (impl.prepared_threads) return impl.prepared_threads.release();
    return new ConnectionThreads(impl.connection_threads, kMaxConnectionThreads);
  };
  // Replaces httplib's default (SO_REUSEPORT, which would let a second server share the port):
  // SO_REUSEADDR allows a restart while old connections linger, and the socket is kept for bind().
  impl.http.set_socket_options([&impl](int socket) {
    const int yes = 1;
    ::setsockopt(socket, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    impl.listen_socket = socket;
  });
  // Replies are written in a few small pieces; with Nagle's algorithm the second one waits for
  // the client's delayed ACK (~40 ms per keep-alive request). Accepted sockets inherit the option.
  impl.http.set_tcp_nodelay(true);
  impl.http.set_payload_max_length(impl.options.max_body_bytes);
  impl.http.set_read_timeout(30, 0);
  impl.http.set_write_timeout(30, 0);
  impl.http.set_keep_alive_timeout(15);
  impl.http.set_keep_alive_max_count(1000);
  if (!impl.options.cors_origin.empty()) {
    impl.http.set_default_headers({{"Access-Control-Allow-Origin", impl.options.cors_origin},
                                   {"Access-Control-Allow-Headers", "Authorization, Content-Type"},
                                   {"Access-Control-Allow-Methods", "GET, POST, OPTIONS"},
                                   {"Vary", "Origin"}});
  }
  impl.http.set_pre_routing_handler([&impl](const httplib::Request& request, httplib::Response& response) {
    if (auto error = body_framing_error(request, impl.options.max_body_bytes)) {
      impl.reply_error(request, response, *error, random_id());
      // The unread body must not be taken for the next request on this connection.
      response.set_header("Connection", "close");
      return httplib::Server::HandlerResponse::Handled;
    }
    const bool open_path = request.path == "/health" || request.path == "/" || request.method == "OPTIONS";
    if (open_path || impl.authorized(request)) return httplib::Server::HandlerResponse::Unhandled;
    impl.reply_error(request, response,
                     ApiError(401, "missing or wrong API key; send 'Authorization: Bearer <key>'", "", "invalid_api_key"),
                     random_id());
    return httplib::Server::HandlerResponse::Handled;
  });
  // Errors httplib produces itself (no route, body too large, malformed HTTP) get OpenAI bodies too.
  impl.http.set_error_handler([&impl](const httplib::Request& request, httplib::Response& response) {
    if (!response.body.empty()) return;
    std::string message;
    if (response.status == 404) {
      message = fmt::format("unknown endpoint {} {}", request.method, request.path);
    } else if (response.status == 413) {
      message = fmt::format("the request body is larger than the limit of {} bytes", impl.options.max_body_bytes);
    } else {
      message = fmt::format("the request could not be handled (HTTP {})", response.status);
    }
    response.set_content(error_body(response.status, message), "application/json");
  });
  impl.http.set_logger([&impl](const httplib::Request& request, const httplib::Response& response) {
    if (logged_by_route(request.path) || response.status == 401) return;
    impl.metrics.count_request(request.path, response.status);
    if (request.path == "/health" || request.path == "/metrics") return;  // probes would drown the log
    AccessRecord record;
    record.id = response.get_header_value("X-Request-Id");
    record.method = request.method;
    record.path = request.path;
    record.remote = request.remote_addr;
    record.status = response.status;
    impl.access_log.write(record);
  });
  impl.install_routes(*this);
}

HttpServer::~HttpServer() { stop(); }

int HttpServer::bind() {
  Impl& impl = *impl_;
  int port = impl.options.port;
  if (port == 0) {
    port = impl.http.bind_to_any_port(impl.options.host);
    require(port > 0, ErrorKind::Io, "cannot listen on {} (any port); check the address", impl.options.host);
  } else {
    require(impl.http.bind_to_port(impl.options.host, port), ErrorKind::Io,
            "cannot listen on {}:{}; is the port in use or the address wrong?", impl.options.host, port);
  }
  // listen() again on a listening socket only changes its backlog (Linux).
  if (impl.listen_socket >= 0) ::listen(impl.listen_socket, kListenBacklog);
  impl.prepared_threads = std::make_unique<ConnectionThreads>(impl.connection_threads, kMaxConnectionThreads);
  return port;
}

void HttpServer::serve() { impl_->http.listen_after_bind(); }

void HttpServer::wait_until_serving() const {
  for (int i = 0; i < 10000 && !impl_->http.is_running(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

void HttpServer::attach(std::vector<ServingModel> models) {
  std::vector<NamedModel> named;
  for (auto& model : models) named.push_back({model.model_name, std::move(model)});
  if (named.size() == 1 && !impl_->options.model_name.empty()) named[0].name = impl_->options.model_name;
  ServedModels served(std::move(named));
  {
    std::lock_guard lock(impl_->model_mutex);
    impl_->services.models = std::move(served);
  }
  ready_.store(true);
}

void HttpServer::attach(std::shared_ptr<ModelResidency> residency) {
  // The router knows the names; the residency holds the models, loaded or not.
  std::vector<NamedModel> named;
  for (const auto& model : residency->models()) named.push_back({model.name, ServingModel{nullptr, nullptr, {}, model.name}});
  ServedModels served(std::move(named));
  {
    std::lock_guard lock(impl_->model_mutex);
    impl_->services.models = std::move(served);
    impl_->residency = std::move(residency);
    impl_->services.residency = impl_->residency.get();
  }
  ready_.store(true);
}

void HttpServer::begin_shutdown() { impl_->shutting_down.store(true); }

void HttpServer::stop() {
  if (impl_->http.is_running()) impl_->http.stop();
}

}  // namespace retort::server
