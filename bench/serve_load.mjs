// Load generator for OpenAI-compatible servers: N concurrent clients, each sending streaming
// /v1/completions requests back to back. Prints aggregate generated tokens/s, time to first token
// and inter-token latency percentiles per concurrency level, as a table and as JSON.
//   node bench/serve_load.mjs --url http://127.0.0.1:8080 --concurrency 1,4,16,32 --max-tokens 64
// Only Node's built-in fetch is used, so it runs without npm packages.
import { parseFlags, percentile, streamChunks } from "./load_common.mjs";

const args = parseFlags();
const url = args.url ?? "http://127.0.0.1:8080";
const levels = (args.concurrency ?? "1,4,16,32").split(",").map(Number);
const maxTokens = Number(args["max-tokens"] ?? 64);
const requestsPerClient = Number(args["requests-per-client"] ?? 2);
const label = args.label ?? url;
const extra = args.extra ? JSON.parse(args.extra) : {};


// One streamed request: returns token arrival times (ms since the request was sent).
async function streamRequest(prompt) {
  const started = performance.now();
  const response = await fetch(url + "/v1/completions", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ prompt, max_tokens: maxTokens, temperature: 0, stream: true,
                           stream_options: { include_usage: true }, ...extra }),
  });
  if (!response.ok) throw new Error(`HTTP ${response.status}: ${await response.text()}`);
  const arrivals = [];
  let usageTokens = null;
  for await (const { chunk, at } of streamChunks(response)) {
    if (chunk.usage) usageTokens = chunk.usage.completion_tokens;
    const choice = chunk.choices?.[0];
    if (choice && choice.text) arrivals.push(at - started);
  }
  return { arrivals, tokens: usageTokens ?? arrivals.length };
}

async function runLevel(concurrency) {
  const prompts = Array.from({ length: concurrency }, (_, i) => `Request ${i}: write a long story about the number ${i}.`);
  const ttft = [], gaps = [];
  let tokens = 0;
  const started = performance.now();
  await Promise.all(prompts.map(async (prompt) => {
    for (let r = 0; r < requestsPerClient; r++) {
      const result = await streamRequest(prompt);
      tokens += result.tokens;
      if (result.arrivals.length) ttft.push(result.arrivals[0]);
      for (let i = 1; i < result.arrivals.length; i++) gaps.push(result.arrivals[i] - result.arrivals[i - 1]);
    }
  }));
  const seconds = (performance.now() - started) / 1000;
  return { concurrency, requests: concurrency * requestsPerClient, tokens, seconds,
           tokens_per_second: tokens / seconds, ttft_p50_ms: percentile(ttft, 50), ttft_p99_ms: percentile(ttft, 99),
           itl_p50_ms: percentile(gaps, 50), itl_p99_ms: percentile(gaps, 99) };
}

await streamRequest("warm up");  // first request pays for page faults and thread start-up
const results = [];
for (const level of levels) results.push(await runLevel(level));
const single = results.find((r) => r.concurrency === 1);
console.log(`\n${label}: ${maxTokens} tokens per request, ${requestsPerClient} requests per client`);
console.log("clients | tok/s agg | × single | TTFT p50 / p99 ms | inter-token p50 / p99 ms");
for (const r of results) {
  const scale = single ? (r.tokens_per_second / single.tokens_per_second).toFixed(2) : "-";
  console.log(`${String(r.concurrency).padStart(7)} | ${r.tokens_per_second.toFixed(1).padStart(9)} | ${scale.padStart(8)} | ` +
              `${r.ttft_p50_ms.toFixed(0)} / ${r.ttft_p99_ms.toFixed(0)} | ${r.itl_p50_ms.toFixed(1)} / ${r.itl_p99_ms.toFixed(1)}`);
}
console.log("JSON " + JSON.stringify({ label, max_tokens: maxTokens, results }));
