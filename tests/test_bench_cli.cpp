// `retort bench` through the real binary: the offline figures of the tiny fixture model, the online
// figures of a real `retort serve` started here on a free port, a non-loopback --url refused, and a
// server that is down or answers 500 counted as errors with a non-zero exit instead of a hang.
// Nothing here asserts on speed: only that the figures exist, are positive and add up.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "test_support.h"

namespace retort {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

test::CommandResult retort(const std::string& arguments) {
  return test::run_command("'" + test::retort_binary() + "' " + arguments + " 2>&1");
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

class TempDir {
 public:
  TempDir() {
    path_ = (fs::temp_directory_path() / "retort-bench-XXXXXX").string();
    if (::mkdtemp(path_.data()) == nullptr) path_.clear();
  }
  ~TempDir() {
    std::error_code ignored;
    if (!path_.empty()) fs::remove_all(path_, ignored);
  }
  std::string operator/(const std::string& name) const { return (fs::path(path_) / name).string(); }

 private:
  std::string path_;
};

// `retort serve MODEL` with the R1 chat template (the fixture has none), on a free port, stopped with SIGTERM when the test ends.
class ServeProcess {
 public:
  explicit ServeProcess(const std::string& model) {
    int out[2];
    if (::pipe(out) != 0) return;
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(out[1], STDOUT_FILENO);
      ::close(out[0]);
      if (std::freopen("/dev/null", "w", stderr) == nullptr) _exit(126);
      const std::string binary = test::retort_binary();
      ::execl(binary.c_str(), "retort", "serve", model.c_str(), "--template", "deepseek-r1", "--port", "0", "--threads",
              "1", nullptr);
      _exit(127);
    }
    ::close(out[1]);
    stdout_ = out[0];
    url_ = wait_for_ready(std::chrono::seconds(60));
  }
  ~ServeProcess() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      int status = 0;
      ::waitpid(pid_, &status, 0);
    }
    if (stdout_ >= 0) ::close(stdout_);
  }
  const std::string& url() const { return url_; }  // empty when it did not become ready

 private:
  // Reads stdout until "ready on http://HOST:PORT" (the model is loaded then).
  std::string wait_for_ready(std::chrono::seconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    std::string text;
    while (std::chrono::steady_clock::now() < deadline) {
      pollfd fd{stdout_, POLLIN, 0};
      if (::poll(&fd, 1, 200) <= 0) continue;
      char buffer[512];
      const ssize_t n = ::read(stdout_, buffer, sizeof buffer);
      if (n <= 0) return {};
      text.append(buffer, static_cast<size_t>(n));
      const size_t at = text.find("ready on ");
      if (at == std::string::npos) continue;
      const size_t end = text.find_first_of(" \n", at + 9);
      if (end != std::string::npos) return text.substr(at + 9, end - at - 9);
    }
    return {};
  }

  pid_t pid_ = -1;
  int stdout_ = -1;
  std::string url_;
};

// A server on 127.0.0.1 that answers every request with HTTP 500 and closes the connection, or
// reads every request and never answers.
enum class Misbehaviour { Answer500, NeverAnswer };

class FailingServer {
 public:
  explicit FailingServer(Misbehaviour misbehaviour) : misbehaviour_(misbehaviour) {
    listener_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof address;
    if (::bind(listener_, reinterpret_cast<sockaddr*>(&address), length) != 0 || ::listen(listener_, 64) != 0) return;
    ::getsockname(listener_, reinterpret_cast<sockaddr*>(&address), &length);
    port_ = ntohs(address.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~FailingServer() {
    stopping_ = true;
    ::shutdown(listener_, SHUT_RDWR);
    if (thread_.joinable()) thread_.join();
    ::close(listener_);
    for (int connection : silent_connections_) ::close(connection);
  }
  int port() const { return port_; }

 private:
  void serve() {
    while (!stopping_) {
      const int connection = ::accept(listener_, nullptr, nullptr);
      if (connection < 0) return;
      read_request(connection);  // all of it: closing with unread bytes would reset the connection
      if (misbehaviour_ == Misbehaviour::NeverAnswer) {
        silent_connections_.push_back(connection);
        continue;
      }
      const std::string body = R"({"error":{"message":"planted failure","type":"server_error"}})";
      const std::string response = "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n"
                                   "Connection: close\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
      if (::write(connection, response.data(), response.size()) < 0) {}
      ::close(connection);
    }
  }

  static void read_request(int connection) {
    std::string request;
    char buffer[4096];
    ssize_t n;
    size_t header_end;
    while ((header_end = request.find("\r\n\r\n")) == std::string::npos &&
           (n = ::read(connection, buffer, sizeof buffer)) > 0)
      request.append(buffer, static_cast<size_t>(n));
    if (header_end == std::string::npos) return;
    std::string headers = request.substr(0, header_end);
    for (char& c : headers) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    const size_t field = headers.find("content-length:");
    const size_t body_length = field == std::string::npos ? 0 : std::stoul(headers.substr(field + 15));
    while (request.size() < header_end + 4 + body_length && (n = ::read(connection, buffer, sizeof buffer)) > 0)
      request.append(buffer, static_cast<size_t>(n));
  }

  Misbehaviour misbehaviour_;
  std::vector<int> silent_connections_;  // open until the test ends
  int listener_ = -1;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

// A port nothing listens on: bound, then closed.
int closed_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof address;
  ::bind(fd, reinterpret_cast<sockaddr*>(&address), length);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  ::close(fd);
  return ntohs(address.sin_port);
}

void expect_positive_spread(const json& spread, const std::string& what) {
  ASSERT_TRUE(spread.is_object()) << what;
  EXPECT_GT(spread["min"].get<double>(), 0) << what;
  EXPECT_GE(spread["median"].get<double>(), spread["min"].get<double>()) << what;
  EXPECT_GE(spread["max"].get<double>(), spread["median"].get<double>()) << what;
  EXPECT_EQ(spread["samples"].size(), 2u) << what;  // --reps 2
}

TEST(BenchCli, OfflineFiguresOfTheTinyModelAsATableAndJson) {
  const std::string model = test::shared_path("fixtures/tiny-r1-qwen");
  RETORT_REQUIRE_PATH(model, "fixture tiny-r1-qwen");
  TempDir dir;
  const auto result = test::run_command("'" + test::retort_binary() + "' bench '" + model +
                                        "' --prompt 16 --decode 4 --depth 0,8 --batch 1,2 --threads 1 --reps 2 "
                                        "--probe-mib 16 --json '" + (dir / "bench.json") + "' 2>/dev/null");
  ASSERT_EQ(result.status, 0) << result.output;
  EXPECT_NE(result.output.find("| model | threads | bandwidth GB/s | prefill 16 tok/s"), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("| tiny-r1-qwen | 1 |"), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("| aggregate decode tok/s"), std::string::npos) << result.output;
  const json report = json::parse(read_file(dir / "bench.json"));
  ASSERT_EQ(report["models"].size(), 1u);
  const json& run = report["models"][0]["runs"][0];
  EXPECT_EQ(run["threads"], 1);
  expect_positive_spread(run["bandwidth_gbs"], "bandwidth");
  expect_positive_spread(run["prefill_tokens_per_second"], "prefill");
  ASSERT_EQ(run["decode"].size(), 2u);
  EXPECT_EQ(run["decode"][1]["depth"], 8);
  for (const json& depth : run["decode"]) {
    expect_positive_spread(depth["tokens_per_second"], "decode");
    EXPECT_GT(depth["roofline_tokens_per_second"].get<double>(), 0);
    EXPECT_GT(depth["roofline_share_median"].get<double>(), 0);
    // Energy: a figure exactly where the machine has RAPL counters, otherwise the reason, once.
    const bool measured = report["models"][0]["energy_unavailable"].get<std::string>().empty();
    EXPECT_EQ(depth["joules_per_token"].is_number(), measured) << depth.dump();
  }
  EXPECT_TRUE(result.output.find("J per token") != std::string::npos ||
              result.output.find("energy: not measured (") != std::string::npos) << result.output;
  ASSERT_EQ(run["batched_decode"].size(), 2u);
  for (const json& batch : run["batched_decode"]) expect_positive_spread(batch["aggregate_tokens_per_second"], "batch");
  EXPECT_GT(run["peak_rss_mib"].get<double>(), 0);
  EXPECT_GT(report["models"][0]["weight_gb_per_token"].get<double>(), 0);
}

TEST(BenchCli, OfflineBenchRefusesADepthPastTheModelsPositions) {
  const std::string model = test::shared_path("fixtures/tiny-r1-qwen");
  RETORT_REQUIRE_PATH(model, "fixture tiny-r1-qwen");
  const auto result = retort("bench '" + model + "' --depth 100000 --threads 1 --probe-mib 16");
  EXPECT_EQ(result.status, 1) << result.output;
  EXPECT_NE(result.output.find("pass a smaller --depth"), std::string::npos) << result.output;
}

TEST(BenchCli, ServeFiguresOfARealServerAtTwoLevels) {
  const std::string model = test::shared_path("fixtures/tiny-r1-qwen");
  RETORT_REQUIRE_PATH(model, "fixture tiny-r1-qwen");
  ServeProcess server(model);
  ASSERT_FALSE(server.url().empty()) << "retort serve did not become ready";
  TempDir dir;
  const auto result = retort("bench serve --url " + server.url() + " --clients 1,2 --requests 3 --max-tokens 4 "
                             "--timeout-s 60 --out '" + (dir / "out") + "'");
  ASSERT_EQ(result.status, 0) << result.output;
  EXPECT_NE(result.output.find("| clients | requests ok / sent / planned"), std::string::npos) << result.output;
  const json report = json::parse(read_file(dir / "out/bench.json"));
  EXPECT_EQ(report["failed_requests"], 0);
  ASSERT_EQ(report["levels"].size(), 2u);
  for (int i = 0; i < 2; ++i) {
    const json& level = report["levels"][i];
    EXPECT_EQ(level["clients"], i + 1);
    EXPECT_EQ(level["requests_planned"], 3);
    EXPECT_EQ(level["requests_sent"], 3);
    EXPECT_EQ(level["succeeded"], 3);
    EXPECT_GT(level["output_tokens"].get<int64_t>(), 0);
    EXPECT_LE(level["output_tokens"].get<int64_t>(), 3 * 4);  // --max-tokens 4
    EXPECT_GT(level["output_tokens_per_second"].get<double>(), 0);
    EXPECT_GT(level["ttft_ms"]["p50"].get<double>(), 0);
    EXPECT_GE(level["end_to_end_ms"]["p99"].get<double>(), level["end_to_end_ms"]["p50"].get<double>());
  }
  EXPECT_NE(read_file(dir / "out/bench.md").find("| 2 | 3 / 3 / 3 | 0 |"), std::string::npos);
  EXPECT_EQ(read_file(dir / "out/bench.svg").rfind("<svg", 0), 0u);
}

TEST(BenchCli, ANonLoopbackUrlIsRefusedBeforeAnythingIsSent) {
  TempDir dir;
  const auto result = retort("bench serve --url http://192.0.2.1:8080 --clients 1 --out '" + (dir / "out") + "'");
  EXPECT_EQ(result.status, 1) << result.output;
  EXPECT_NE(result.output.find("--allow-remote"), std::string::npos) << result.output;
  EXPECT_FALSE(fs::exists(dir / "out"));
}

TEST(BenchCli, AServerThatIsDownIsCountedAsErrorsWithANonZeroExit) {
  TempDir dir;
  const auto result = retort("bench serve --url http://127.0.0.1:" + std::to_string(closed_port()) +
                             " --clients 1,2 --requests 2 --timeout-s 5 --out '" + (dir / "out") + "'");
  EXPECT_EQ(result.status, 1) << result.output;
  const json report = json::parse(read_file(dir / "out/bench.json"));
  EXPECT_EQ(report["failed_requests"], 4);
  EXPECT_EQ(report["levels"][1]["failed"], 2);
  EXPECT_NE(result.output.find("could not connect"), std::string::npos) << result.output;
}

TEST(BenchCli, AServerAnswering500IsCountedAsErrorsWithANonZeroExit) {
  FailingServer server(Misbehaviour::Answer500);
  ASSERT_GT(server.port(), 0);
  TempDir dir;
  const auto result = retort("bench serve --url http://127.0.0.1:" + std::to_string(server.port()) +
                             " --model m --clients 1,2 --requests 2 --timeout-s 5 --out '" + (dir / "out") + "'");
  EXPECT_EQ(result.status, 1) << result.output;
  const json report = json::parse(read_file(dir / "out/bench.json"));
  EXPECT_EQ(report["failed_requests"], 4);
  ASSERT_EQ(report["levels"][0]["errors"].size(), 1u);
  EXPECT_NE(report["levels"][0]["errors"][0]["message"].get<std::string>().find("HTTP 500"), std::string::npos);
  EXPECT_NE(read_file(dir / "out/bench.md").find("planted failure"), std::string::npos);
}

TEST(BenchCli, ASilentServerIsCutOffByTheTimeoutsNotWaitedForForever) {
  FailingServer server(Misbehaviour::NeverAnswer);
  ASSERT_GT(server.port(), 0);
  TempDir dir;
  const std::string url = "http://127.0.0.1:" + std::to_string(server.port());
  const auto started = std::chrono::steady_clock::now();
  const auto per_request = retort("bench serve --url " + url + " --model m --clients 2 --requests 2 --timeout-s 1 "
                                  "--out '" + (dir / "a") + "'");
  EXPECT_EQ(per_request.status, 1) << per_request.output;
  const json report = json::parse(read_file(dir / "a/bench.json"));
  EXPECT_EQ(report["failed_requests"], 2);
  EXPECT_NE(report["levels"][0]["errors"][0]["message"].get<std::string>().find("--timeout-s"), std::string::npos);
  // The whole run's limit ends the warm-up and leaves the levels unsent, however long --timeout-s is.
  const auto whole_run = retort("bench serve --url " + url + " --model m --clients 1,2 --requests 2 --timeout-s 600 "
                                "--time-limit-s 2 --out '" + (dir / "b") + "'");
  EXPECT_EQ(whole_run.status, 1) << whole_run.output;
  EXPECT_NE(whole_run.output.find("--time-limit-s ran out"), std::string::npos) << whole_run.output;
  EXPECT_EQ(json::parse(read_file(dir / "b/bench.json"))["unsent_requests"], 4);
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(60));  // a bound, not a speed
}

}  // namespace
}  // namespace retort
