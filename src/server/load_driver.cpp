#include "server/load_driver.h"

#include <arpa/inet.h>

#include <algorithm>
#include <atomic>
#include <thread>

#include <fmt/format.h>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include "util/error.h"
#include "util/input_limits.h"

namespace retort::server {
namespace {

using Clock = std::chrono::steady_clock;

double milliseconds_between(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double, std::milli>(to - from).count();
}

std::string lowercase(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return text;
}

bool is_loopback_host(const std::string& host) {
  if (lowercase(host) == "localhost") return true;
  in_addr v4{};
  if (inet_pton(AF_INET, host.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6{};
  if (inet_pton(AF_INET6, host.c_str(), &v6) == 1) return IN6_IS_ADDR_LOOPBACK(&v6);
  return false;
}

}  // namespace

BenchTarget parse_bench_target(const std::string& url, bool allow_remote) {
  const size_t scheme_end = url.find("://");
  const std::string scheme = scheme_end == std::string::npos ? "" : lowercase(url.substr(0, scheme_end));
  require(scheme == "http" || scheme == "https", ErrorKind::InvalidInput,
          "--url '{}' is not an http:// or https:// URL; pass the server's base URL, e.g. http://127.0.0.1:8080",
          echo_excerpt(url, 100));
  const size_t authority_begin = scheme_end + 3;
  const size_t path_begin = std::min(url.find('/', authority_begin), url.size());
  const std::string authority = url.substr(authority_begin, path_begin - authority_begin);
  require(authority.find('@') == std::string::npos, ErrorKind::InvalidInput,
          "--url must not carry credentials (user@host); pass the key with --api-key");
  std::string host = authority;
  if (!host.empty() && host.front() == '[') {
    host = host.substr(1, host.find(']') - 1);  // [::1]:8080
  } else if (const size_t colon = host.rfind(':'); colon != std::string::npos) {
    host = host.substr(0, colon);
  }
  require(!host.empty(), ErrorKind::InvalidInput, "--url '{}' names no host", echo_excerpt(url, 100));
  require(allow_remote || is_loopback_host(host), ErrorKind::InvalidInput,
          "--url points at '{}', which is not this machine's loopback (127.0.0.1, ::1, localhost); a benchmark "
          "sends bursts of concurrent requests, so retort sends them elsewhere only when told to: add "
          "--allow-remote if that server is your own", echo_excerpt(host, 100));
  std::string prefix = url.substr(path_begin);
  while (!prefix.empty() && prefix.back() == '/') prefix.pop_back();
  if (prefix.size() >= 3 && prefix.compare(prefix.size() - 3, 3, "/v1") == 0) prefix.resize(prefix.size() - 3);
  return {scheme + "://" + authority, host, prefix + "/v1/chat/completions", prefix + "/v1/models"};
}

void ChatStreamReader::feed(std::string_view bytes, Clock::time_point arrived) {
  for (char c : bytes)
    if (c != '\r') pending_ += c;  // events may end in CRLF CRLF
  size_t end;
  while ((end = pending_.find("\n\n")) != std::string::npos) {
    read_event(std::string_view(pending_).substr(0, end), arrived);
    pending_.erase(0, end + 2);
  }
}

void ChatStreamReader::read_event(std::string_view event, Clock::time_point arrived) {
  std::string data;
  for (size_t begin = 0; begin <= event.size();) {
    const size_t end = std::min(event.find('\n', begin), event.size());
    std::string_view line = event.substr(begin, end - begin);
    begin = end + 1;
    if (line.substr(0, 5) != "data:") continue;  // comments (": ping"), event names, ids
    line.remove_prefix(line.size() > 5 && line[5] == ' ' ? 6 : 5);
    if (!data.empty()) data += '\n';  // a multi-line data field
    data += line;
  }
  if (data.empty()) return;
  if (data == "[DONE]") {
    done_ = true;
    return;
  }
  try {
    read_chunk(data, arrived);
  } catch (const nlohmann::json::exception&) {  // a field of an unexpected type
    if (error_.empty()) error_ = "a stream chunk is not an OpenAI chat chunk: " + echo_excerpt(data, 80);
  }
}

void ChatStreamReader::read_chunk(const std::string& data, Clock::time_point arrived) {
  const auto chunk = nlohmann::json::parse(data, nullptr, /*allow_exceptions=*/false);
  if (!chunk.is_object()) {
    if (error_.empty()) error_ = "a stream event is not JSON: " + echo_excerpt(data, 80);
    return;
  }
  if (chunk.contains("error")) {
    const auto& error = chunk["error"];
    const bool has_message = error.is_object() && error.contains("message") && error["message"].is_string();
    if (error_.empty()) error_ = "error in stream: " + echo_excerpt(has_message ? error["message"].get<std::string>() : error.dump(), 120);
    return;
  }
  if (chunk.contains("usage") && chunk["usage"].is_object() && chunk["usage"].value("completion_tokens", -1) >= 0)
    usage_tokens_ = chunk["usage"]["completion_tokens"].get<int64_t>();
  if (!chunk.contains("choices") || !chunk["choices"].is_array() || chunk["choices"].empty()) return;
  const auto& delta = chunk["choices"][0].value("delta", nlohmann::json::object());
  auto carries_text = [&](const char* key) {
    return delta.is_object() && delta.contains(key) && delta[key].is_string() && !delta[key].get<std::string>().empty();
  };
  if (carries_text("content") || carries_text("reasoning_content"))
    text_arrivals_ms_.push_back(milliseconds_between(sent_, arrived));
}

RequestOutcome ChatStreamReader::finish(Clock::time_point ended) const {
  RequestOutcome outcome;
  outcome.end_to_end_ms = milliseconds_between(sent_, ended);
  outcome.output_tokens = usage_tokens_ >= 0 ? usage_tokens_ : static_cast<int64_t>(text_arrivals_ms_.size());
  if (!text_arrivals_ms_.empty()) outcome.ttft_ms = text_arrivals_ms_.front();
  for (size_t i = 1; i < text_arrivals_ms_.size(); ++i)
    outcome.gaps_ms.push_back(text_arrivals_ms_[i] - text_arrivals_ms_[i - 1]);
  if (!error_.empty()) {
    outcome.error = error_;
  } else if (!done_ && text_arrivals_ms_.empty()) {
    outcome.error = "the stream ended without any chunk or [DONE]";
  } else {
    outcome.ok = true;
  }
  return outcome;
}

namespace {

// One connection per client thread, kept alive between its requests as a real client would.
std::unique_ptr<httplib::Client> connect(const BenchTarget& target, const LoadOptions& options) {
  auto client = std::make_unique<httplib::Client>(target.scheme_host_port);
  client->set_keep_alive(true);
  client->set_tcp_nodelay(true);  // else Nagle holds the body behind the headers until a delayed ACK (40 ms)
  client->set_connection_timeout(std::chrono::seconds(5));
  const auto timeout = std::chrono::duration<double>(options.request_timeout_seconds);
  client->set_read_timeout(std::chrono::duration_cast<std::chrono::microseconds>(timeout));
  client->set_write_timeout(std::chrono::duration_cast<std::chrono::microseconds>(timeout));
  if (!options.api_key.empty()) client->set_bearer_token_auth(options.api_key);
  return client;
}

std::string transport_error(httplib::Error error) {
  switch (error) {
    case httplib::Error::Connection: return "could not connect (is the server running at --url?)";
    case httplib::Error::ConnectionTimeout: return "connecting timed out";
    case httplib::Error::Read: return "the connection closed before the response ended";
    case httplib::Error::Write: return "the request could not be sent (connection closed)";
    default: return "HTTP client error: " + httplib::to_string(error);
  }
}

// The message of an OpenAI-style error body ({"error": {"message": ...}}), else the body's start.
std::string error_body_message(const std::string& body) {
  const auto parsed = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_object() && parsed.contains("error") && parsed["error"].is_object() &&
      parsed["error"].contains("message") && parsed["error"]["message"].is_string())
    return echo_excerpt(parsed["error"]["message"].get<std::string>(), 160);
  return echo_excerpt(body, 160);
}

std::string request_body(const LoadOptions& options, const std::string& model, const std::string& prompt) {
  nlohmann::json body = {{"messages", {{{"role", "user"}, {"content", prompt}}}},
                         {"max_tokens", options.max_tokens},
                         {"temperature", 0},
                         {"stream", true},
                         {"stream_options", {{"include_usage", true}}}};
  if (!model.empty()) body["model"] = model;
  return body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);  // a prompt file's bad UTF-8 → U+FFFD
}

// Streams one request; cut off (as a failure) at the request's timeout or the overall deadline.
RequestOutcome stream_request(httplib::Client& client, const BenchTarget& target, const std::string& body,
                              const LoadOptions& options, Clock::time_point overall_deadline) {
  const auto sent = Clock::now();
  const auto timeout = std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double>(options.request_timeout_seconds));
  const auto deadline = std::min(sent + timeout, overall_deadline);
  // httplib's read timeout is what ends a wait on a silent server, so it must end at the deadline too.
  client.set_read_timeout(std::chrono::duration_cast<std::chrono::microseconds>(
      std::max<Clock::duration>(deadline - sent, std::chrono::milliseconds(1))));
  httplib::Request request;
  request.method = "POST";
  request.path = target.chat_path;
  request.body = body;
  request.set_header("Content-Type", "application/json");
  request.set_header("Accept", "text/event-stream");
  ChatStreamReader reader(sent);
  int status = 0;
  std::string error_body;
  bool cut_off = false;
  request.response_handler = [&](const httplib::Response& response) {
    status = response.status;
    return true;
  };
  request.content_receiver = [&](const char* data, size_t size, uint64_t, uint64_t) {
    const auto now = Clock::now();
    if (status != 200) {
      error_body.append(data, std::min<size_t>(size, 2048 - std::min<size_t>(error_body.size(), 2048)));
      return true;
    }
    reader.feed(std::string_view(data, size), now);
    cut_off = now > deadline;
    return !cut_off;
  };
  httplib::Response response;
  httplib::Error error = httplib::Error::Success;
  const bool answered = client.send(request, response, error);
  const auto ended = Clock::now();
  RequestOutcome outcome = reader.finish(ended);
  if (cut_off || (!answered && ended >= deadline)) {
    outcome.ok = false;
    outcome.error = deadline == overall_deadline ? "cut off by --time-limit-s" : "cut off by --timeout-s";
  } else if (!answered) {
    outcome.ok = false;
    outcome.error = transport_error(error);
  } else if (status != 200) {
    outcome.ok = false;
    outcome.error = fmt::format("HTTP {}: {}", status, error_body_message(error_body));
  }
  return outcome;
}

// The model id the server lists first, for servers (vLLM) that insist on a matching "model";
// empty when it lists none or cannot be asked (the requests then go without one).
std::string first_listed_model(const BenchTarget& target, const LoadOptions& options) {
  auto client = connect(target, options);
  const auto result = client->Get(target.models_path);
  if (!result || result->status != 200) return {};
  const auto listing = nlohmann::json::parse(result->body, nullptr, /*allow_exceptions=*/false);
  if (!listing.is_object() || !listing.contains("data") || !listing["data"].is_array() || listing["data"].empty())
    return {};
  const auto& first = listing["data"][0];
  return first.is_object() && first.contains("id") && first["id"].is_string() ? first["id"].get<std::string>() : "";
}

using Progress = std::function<void(const std::string&)>;

// Joins the client threads, saying every few seconds how many requests have been answered, so a
// long level on a slow model does not look like a hang.
void report_while_running(int clients, int64_t planned, const std::atomic<int64_t>& answered,
                          const std::atomic<int>& clients_done, std::vector<std::thread>& threads,
                          const Progress& progress) {
  auto last_report = Clock::now();
  while (clients_done.load() < clients && progress) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    if (Clock::now() - last_report < std::chrono::seconds(5)) continue;
    last_report = Clock::now();
    progress(fmt::format("clients {}: {} of {} requests answered", clients, answered.load(), planned));
  }
  for (std::thread& thread : threads) thread.join();
}

int64_t planned_requests(const LoadOptions& options, int clients) {
  return options.requests_per_level > 0 ? options.requests_per_level : 4 * int64_t{clients};
}

LevelFigures run_level(const BenchTarget& target, const LoadOptions& options, const std::string& model, int clients,
                       Clock::time_point overall_deadline, const Progress& progress) {
  const int64_t planned = planned_requests(options, clients);
  std::vector<RequestOutcome> outcomes(static_cast<size_t>(planned));
  std::vector<char> was_sent(static_cast<size_t>(planned), 0);
  std::atomic<int64_t> next_request{0};
  std::atomic<int64_t> answered{0};
  std::atomic<int> clients_done{0};
  std::vector<Clock::time_point> client_finished(static_cast<size_t>(clients));
  const auto started = Clock::now();
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c)
    threads.emplace_back([&, c] {
      auto client = connect(target, options);
      for (int64_t i = next_request++; i < planned && Clock::now() < overall_deadline; i = next_request++) {
        const std::string& prompt = options.prompts[static_cast<size_t>(i) % options.prompts.size()];
        RequestOutcome& outcome = outcomes[static_cast<size_t>(i)];
        try {
          outcome = stream_request(*client, target, request_body(options, model, prompt), options, overall_deadline);
        } catch (const std::exception& error) {  // a thread must not take the process down with it
          outcome = RequestOutcome{};
          outcome.error = std::string("client error: ") + error.what();
        }
        was_sent[static_cast<size_t>(i)] = 1;
        ++answered;
      }
      client_finished[static_cast<size_t>(c)] = Clock::now();
      ++clients_done;
    });
  report_while_running(clients, planned, answered, clients_done, threads, progress);
  // To the last answer, not to when the progress loop noticed it.
  const auto finished = *std::max_element(client_finished.begin(), client_finished.end());
  const double seconds = std::chrono::duration<double>(finished - started).count();
  std::vector<RequestOutcome> sent;
  for (size_t i = 0; i < outcomes.size(); ++i)
    if (was_sent[i]) sent.push_back(std::move(outcomes[i]));
  return summarize_level(clients, planned, sent, seconds);
}

}  // namespace

ServeBenchReport run_serve_bench(const LoadOptions& options, const std::function<void(const std::string&)>& progress) {
  const BenchTarget target = parse_bench_target(options.url, options.allow_remote);
  require(!options.clients.empty(), ErrorKind::InvalidInput, "--clients needs at least one level, e.g. 1,4,16");
  require(!options.prompts.empty(), ErrorKind::InvalidInput, "no prompts to send");
  const auto overall_deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                                   std::chrono::duration<double>(options.time_limit_seconds));
  ServeBenchReport report;
  report.url = options.url;
  report.model = options.model.empty() ? first_listed_model(target, options) : options.model;
  report.max_tokens = options.max_tokens;
  report.prompts = static_cast<int64_t>(options.prompts.size());
  {  // the first request pays for page faults and thread start-up on the server; not counted
    auto client = connect(target, options);
    const RequestOutcome warm = stream_request(*client, target, request_body(options, report.model, options.prompts[0]),
                                               options, overall_deadline);
    if (progress) progress(warm.ok ? fmt::format("warm-up request: {:.0f} ms", warm.end_to_end_ms)
                                   : "warm-up request failed: " + warm.error);
  }
  for (int clients : options.clients) {
    if (Clock::now() >= overall_deadline) {  // listed with nothing sent, so the report shows what was skipped
      report.levels.push_back(summarize_level(clients, planned_requests(options, clients), {}, 0));
      continue;
    }
    if (progress) progress(fmt::format("clients {}: sending {} requests", clients, planned_requests(options, clients)));
    report.levels.push_back(run_level(target, options, report.model, clients, overall_deadline, progress));
    const LevelFigures& level = report.levels.back();
    if (progress)
      progress(fmt::format("clients {}: {} of {} requests ok, {} failed, {:.1f} output tok/s, end-to-end p50 {}",
                           clients, level.succeeded, level.requests_planned, level.failed,
                           level.output_tokens_per_second,
                           level.succeeded > 0 ? fmt::format("{:.0f} ms", level.end_to_end_ms.p50) : "–"));
  }
  return report;
}

}  // namespace retort::server
