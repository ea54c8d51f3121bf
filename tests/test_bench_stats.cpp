// The pieces of `retort bench` that need no model or server: percentiles and medians against
// hand-computed values, a level's summary, the SSE stream reader, --url checks, prompt files and
// the report's shapes.
#include <gtest/gtest.h>

#include <cmath>

#include <nlohmann/json.hpp>

#include "eval/sample_stats.h"
#include "eval/serve_bench.h"
#include "server/load_driver.h"
#include "util/error.h"

namespace retort {
namespace {

TEST(BenchStats, PercentileIsTheNearestRank) {
  // Nearest rank: sorted[ceil(p/100 · n) − 1]. For {15, 20, 35, 40, 50} (given unsorted):
  // p5 → rank 1, p30 → ceil(1.5) = 2, p40 → 2, p50 → ceil(2.5) = 3, p90 → ceil(4.5) = 5, p100 → 5.
  const std::vector<double> values{40, 15, 50, 35, 20};
  EXPECT_EQ(percentile(values, 5), 15);
  EXPECT_EQ(percentile(values, 30), 20);
  EXPECT_EQ(percentile(values, 40), 20);
  EXPECT_EQ(percentile(values, 50), 35);
  EXPECT_EQ(percentile(values, 90), 50);
  EXPECT_EQ(percentile(values, 100), 50);
  // 1..10: p50 → rank 5 → 5, p90 → rank 9 → 9, p99 → ceil(9.9) = 10 → 10.
  std::vector<double> one_to_ten;
  for (int i = 10; i >= 1; --i) one_to_ten.push_back(i);
  EXPECT_EQ(percentile(one_to_ten, 50), 5);
  EXPECT_EQ(percentile(one_to_ten, 90), 9);
  EXPECT_EQ(percentile(one_to_ten, 99), 10);
  EXPECT_EQ(percentile({7}, 99), 7);
  EXPECT_TRUE(std::isnan(percentile({}, 50)));
}

TEST(BenchStats, MedianAveragesTheTwoMiddleValuesOfAnEvenCount) {
  EXPECT_EQ(median({3, 1, 2}), 2);
  EXPECT_EQ(median({4, 1, 3, 2}), 2.5);
  EXPECT_TRUE(std::isnan(median({})));
  const Spread spread = spread_of({12, 10, 11, 30});
  EXPECT_EQ(spread.min, 10);
  EXPECT_EQ(spread.median, 11.5);
  EXPECT_EQ(spread.max, 30);
  EXPECT_EQ(spread.samples, (std::vector<double>{12, 10, 11, 30}));
}

RequestOutcome succeeded(double ttft, std::vector<double> gaps, double end_to_end, int64_t tokens) {
  RequestOutcome outcome;
  outcome.ok = true;
  outcome.ttft_ms = ttft;
  outcome.gaps_ms = std::move(gaps);
  outcome.end_to_end_ms = end_to_end;
  outcome.output_tokens = tokens;
  return outcome;
}

TEST(BenchStats, ALevelCountsErrorsAndSummarisesOnlyTheRequestsThatSucceeded) {
  RequestOutcome refused;
  refused.error = "HTTP 500: boom";
  const std::vector<RequestOutcome> sent{succeeded(100, {10, 30}, 200, 3), refused, succeeded(300, {20}, 400, 2),
                                         refused};
  const LevelFigures level = summarize_level(4, 5, sent, 2.0);
  EXPECT_EQ(level.clients, 4);
  EXPECT_EQ(level.requests_planned, 5);
  EXPECT_EQ(level.requests_sent, 4);
  EXPECT_EQ(level.succeeded, 2);
  EXPECT_EQ(level.failed, 2);
  EXPECT_EQ(level.output_tokens, 5);
  EXPECT_DOUBLE_EQ(level.output_tokens_per_second, 2.5);
  EXPECT_DOUBLE_EQ(level.requests_per_second, 1.0);
  EXPECT_EQ(level.ttft_ms.count, 2u);
  EXPECT_EQ(level.ttft_ms.p50, 100);  // rank ceil(0.5 · 2) = 1
  EXPECT_EQ(level.ttft_ms.p99, 300);
  EXPECT_EQ(level.itl_ms.count, 3u);  // gaps pooled over requests: {10, 20, 30}
  EXPECT_EQ(level.itl_ms.p50, 20);
  EXPECT_DOUBLE_EQ(level.itl_ms.mean, 20);
  EXPECT_EQ(level.end_to_end_ms.p90, 400);
  ASSERT_EQ(level.errors.size(), 1u);
  EXPECT_EQ(level.errors[0], std::make_pair(std::string("HTTP 500: boom"), int64_t{2}));
}

using Clock = std::chrono::steady_clock;

TEST(BenchStream, ChunksWithTextAreTimedWhereverTheBytesSplit) {
  const auto sent = Clock::time_point{};
  const auto at = [&](int ms) { return sent + std::chrono::milliseconds(ms); };
  server::ChatStreamReader reader(sent);
  reader.feed("data: {\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\n\n: keep-alive\n\nda", at(5));
  reader.feed("ta: {\"choices\":[{\"delta\":{\"reasoning_content\":\"Hm\"}}]}\r\n\r\n", at(40));
  reader.feed("data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"!\"}}]}", at(55));
  reader.feed("\n\ndata: {\"choices\":[],\"usage\":{\"completion_tokens\":7}}\n\ndata: [DONE]\n\n", at(90));
  const RequestOutcome outcome = reader.finish(at(100));
  EXPECT_TRUE(outcome.ok) << outcome.error;
  EXPECT_DOUBLE_EQ(outcome.ttft_ms, 40);
  EXPECT_EQ(outcome.gaps_ms, (std::vector<double>{15, 35}));  // 40 → 55 → 90
  EXPECT_DOUBLE_EQ(outcome.end_to_end_ms, 100);
  EXPECT_EQ(outcome.output_tokens, 7);  // the server's count, not the 3 chunks
}

TEST(BenchStream, AnErrorEventOrAnEmptyStreamIsAFailure) {
  server::ChatStreamReader with_error(Clock::time_point{});
  with_error.feed("data: {\"error\":{\"message\":\"context full\"}}\n\n", Clock::time_point{});
  const RequestOutcome failed = with_error.finish(Clock::time_point{});
  EXPECT_FALSE(failed.ok);
  EXPECT_NE(failed.error.find("context full"), std::string::npos);
  server::ChatStreamReader empty(Clock::time_point{});
  EXPECT_FALSE(empty.finish(Clock::time_point{}).ok);
  server::ChatStreamReader no_usage(Clock::time_point{});
  no_usage.feed("data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\ndata: [DONE]\n\n", Clock::time_point{});
  EXPECT_EQ(no_usage.finish(Clock::time_point{}).output_tokens, 1);
}

TEST(BenchUrl, LoopbackIsAcceptedAndThePathEndsInChatCompletions) {
  EXPECT_EQ(server::parse_bench_target("http://127.0.0.1:8080", false).chat_path, "/v1/chat/completions");
  EXPECT_EQ(server::parse_bench_target("http://localhost:8000/v1/", false).chat_path, "/v1/chat/completions");
  EXPECT_EQ(server::parse_bench_target("http://[::1]:9000/proxy/v1", false).chat_path, "/proxy/v1/chat/completions");
  EXPECT_EQ(server::parse_bench_target("http://127.8.9.10:1/", false).models_path, "/v1/models");
  EXPECT_EQ(server::parse_bench_target("http://127.0.0.1:8080/v1", false).scheme_host_port, "http://127.0.0.1:8080");
}

TEST(BenchUrl, OtherHostsNeedAllowRemote) {
  for (const char* url : {"http://10.1.2.3:8080", "http://example.com", "https://0.0.0.0:443", "http://[2001:db8::1]:80"}) {
    try {
      server::parse_bench_target(url, false);
      ADD_FAILURE() << url << " was accepted without --allow-remote";
    } catch (const Error& error) {
      EXPECT_NE(std::string(error.what()).find("--allow-remote"), std::string::npos) << error.what();
    }
    EXPECT_NO_THROW(server::parse_bench_target(url, true)) << url;
  }
  EXPECT_THROW(server::parse_bench_target("ftp://127.0.0.1", false), Error);
  EXPECT_THROW(server::parse_bench_target("127.0.0.1:8080", false), Error);
  EXPECT_THROW(server::parse_bench_target("http://user:pw@127.0.0.1", false), Error);
}

TEST(BenchPrompts, PlainLinesAndJsonLinesBothWork) {
  EXPECT_EQ(parse_bench_prompts("first\n\n  second  \r\n{\"prompt\": \"third\", \"id\": 3}\n", "p.txt"),
            (std::vector<std::string>{"first", "second", "third"}));
  try {
    parse_bench_prompts("ok\n{\"text\": \"no prompt key\"}\n", "p.jsonl");
    ADD_FAILURE() << "a JSON line without \"prompt\" was accepted";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("p.jsonl line 2"), std::string::npos) << error.what();
  }
  EXPECT_THROW(parse_bench_prompts("\n\n", "empty.txt"), Error);
  EXPECT_FALSE(builtin_bench_prompts().empty());
}

TEST(BenchReport, MarkdownJsonAndSvgCarryEveryLevel) {
  ServeBenchReport report;
  report.url = "http://127.0.0.1:1/?a&b";
  report.max_tokens = 8;
  report.prompts = 2;
  RequestOutcome refused;
  refused.error = "could not connect";
  report.levels.push_back(summarize_level(1, 2, {succeeded(50, {5}, 60, 2), succeeded(70, {}, 80, 1)}, 1.0));
  report.levels.push_back(summarize_level(4, 4, {refused, refused, refused}, 0.5));  // one unsent
  EXPECT_EQ(failed_requests(report), 3);
  EXPECT_EQ(unsent_requests(report), 1);
  const std::string markdown = serve_bench_markdown(report);
  EXPECT_NE(markdown.find("| 1 | 2 / 2 / 2 | 0 |"), std::string::npos) << markdown;
  EXPECT_NE(markdown.find("| 4 | 0 / 3 / 4 | 3 |"), std::string::npos) << markdown;
  EXPECT_NE(markdown.find("clients 4: 3 × could not connect"), std::string::npos) << markdown;
  const auto json = nlohmann::json::parse(serve_bench_json(report));
  EXPECT_EQ(json["levels"].size(), 2u);
  EXPECT_EQ(json["levels"][1]["failed"], 3);
  EXPECT_TRUE(json["levels"][1]["ttft_ms"]["p50"].is_null());  // nothing succeeded: no number
  EXPECT_EQ(json["unsent_requests"], 1);
  const std::string svg = serve_bench_svg(report);
  EXPECT_EQ(svg.rfind("<svg", 0), 0u);
  EXPECT_NE(svg.find("</svg>"), std::string::npos);
  EXPECT_NE(svg.find("<polyline"), std::string::npos);
  EXPECT_NE(svg.find("?a&amp;b"), std::string::npos);  // the URL is escaped
  EXPECT_EQ(svg.find("nan"), std::string::npos);        // a level with no latencies is left out, not drawn at NaN
}

}  // namespace
}  // namespace retort
