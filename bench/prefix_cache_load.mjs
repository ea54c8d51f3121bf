// Prefix-cache workloads against an OpenAI-compatible server (/v1/chat/completions, streaming):
//   shared-system: every request opens with the same ~N-token system prompt, then its own question;
//   multi-turn:    each client holds a chat of T turns, every turn resending the earlier ones.
// Per workload and client count: time to first token (p50/p90, ms), and from the server's /metrics
// (counters named by --evaluated-metric and --hit-metric, retort's by default; "-" where the server has
// none) the prompt tokens it evaluated and those it found cached. A new system prompt per level, so each
// level starts cold.
//   node bench/prefix_cache_load.mjs --url URL --clients 1,4,16 --system-tokens 1000 --turns 3 --max-tokens 16
//        [--evaluated-metric llamacpp:prompt_tokens_total --hit-metric none]   (llama-server --metrics)
import { parseFlags, percentile, streamChunks } from "./load_common.mjs";

const args = parseFlags();
const url = args.url ?? "http://127.0.0.1:8080";
const levels = (args.clients ?? "1,4,16").split(",").map(Number);
const systemTokens = Number(args["system-tokens"] ?? 1000);
const turns = Number(args.turns ?? 3);
const maxTokens = Number(args["max-tokens"] ?? 16);
const label = args.label ?? url;
const evaluatedMetric = args["evaluated-metric"] ?? "retort_prompt_tokens_total";
const hitMetric = args["hit-metric"] ?? "retort_prefix_cache_hit_tokens_total";

function rng(seed) {  // mulberry32: the same prompts on every run
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const WORDS = ("account balance card transfer payment refund branch loan interest rate savings deposit " +
  "withdraw limit fee statement currency exchange verify identity address phone pending declined " +
  "contactless overdraft mortgage beneficiary standing order direct debit cheque").split(" ");
function text(random, words) {
  return Array.from({ length: words }, () => WORDS[Math.floor(random() * WORDS.length)]).join(" ");
}

async function metric(name) {
  try {
    const body = await (await fetch(url + "/metrics")).text();
    const match = body.match(new RegExp(`^${name} ([0-9.e+]+)$`, "m"));
    return match ? Number(match[1]) : NaN;
  } catch { return NaN; }
}

// One streamed chat request: the reply's text and the time to its first token.
async function chat(messages) {
  const started = performance.now();
  const response = await fetch(url + "/v1/chat/completions", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ messages, max_tokens: maxTokens, temperature: 0, stream: true }),
  });
  if (!response.ok) throw new Error(`HTTP ${response.status}: ${await response.text()}`);
  let reply = "", ttft = null;
  for await (const { chunk, at } of streamChunks(response)) {
    const delta = chunk.choices?.[0]?.delta ?? {};
    const piece = (delta.content ?? "") + (delta.reasoning_content ?? "");
    if (piece && ttft === null) ttft = at - started;
    reply += delta.content ?? "";
  }
  return { reply, ttft: ttft ?? performance.now() - started };
}

const workloads = {
  // ~0.75 words per token for this vocabulary: systemTokens·0.75 words.
  "shared-system": async (clients, level) => {
    const system = text(rng(1000 + level), Math.round(systemTokens * 0.75));
    const client = async (c) => {
      const ttfts = [];
      for (let r = 0; r < 2; ++r) {
        const question = text(rng(c * 100 + r + level * 7919), 12);
        ttfts.push((await chat([{ role: "system", content: system }, { role: "user", content: question }])).ttft);
      }
      return ttfts;
    };
    return (await Promise.all(Array.from({ length: clients }, (_, c) => client(c)))).flat();
  },
  "multi-turn": async (clients, level) => {
    const client = async (c) => {
      const random = rng(5000 + c + level * 104729);
      const messages = [{ role: "system", content: text(random, 150) }];
      const ttfts = [];
      for (let t = 0; t < turns; ++t) {
        messages.push({ role: "user", content: text(random, 60) });
        const { reply, ttft } = await chat(messages);
        ttfts.push(ttft);
        messages.push({ role: "assistant", content: reply });
      }
      return ttfts;
    };
    return (await Promise.all(Array.from({ length: clients }, (_, c) => client(c)))).flat();
  },
};

console.log(`## ${label}: ${maxTokens} tokens per reply`);
console.log("| workload | clients | requests | TTFT p50 ms | TTFT p90 ms | prompt tokens evaluated | found cached |");
console.log("|---|---:|---:|---:|---:|---:|---:|");
const results = [];
for (const [name, run] of Object.entries(workloads)) {
  for (const clients of levels) {
    const before = [await metric(evaluatedMetric), await metric(hitMetric)];
    const ttfts = await run(clients, clients);
    const after = [await metric(evaluatedMetric), await metric(hitMetric)];
    const evaluated = after[0] - before[0], hits = after[1] - before[1];
    const row = { workload: name, clients, requests: ttfts.length, ttft_p50_ms: percentile(ttfts, 50),
                  ttft_p90_ms: percentile(ttfts, 90), evaluated, hits };
    results.push(row);
    const shown = (v) => (Number.isFinite(v) ? String(v) : "-");
    console.log(`| ${name} | ${clients} | ${row.requests} | ${row.ttft_p50_ms.toFixed(0)} | ${row.ttft_p90_ms.toFixed(0)} | ` +
                `${shown(evaluated)} | ${shown(hits)} |`);
  }
}
console.log("JSON " + JSON.stringify({ label, results }));
