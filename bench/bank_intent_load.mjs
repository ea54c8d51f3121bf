// The guide's bank scenario, served: every BANKING77 test query goes to an OpenAI-compatible server as
// "<query>\nLabel:" (the prompt `retort train` and `retort eval classify` use for CSV data), constrained to
// answer one of the 77 intents (`guided_choice`, vLLM's name, which retort serve implements), greedy.
// For each number of concurrent clients it reports intent accuracy, sustained requests/s, end-to-end
// latency p50/p99 and errors, as a table and as JSON, and how far that is from the guide's bank
// (2 M requests a day, about 23 per second).
//   node bench/bank_intent_load.mjs --url http://127.0.0.1:8080 --data runs/banking77/test.csv \
//        --labels ../shared/data/banking77/categories.json [--clients 1,4,16] [--limit 400] [--cores 2]
// --limit takes an evenly spaced subset of the test queries (as `retort eval classify --limit` does);
// --cores divides requests/s for the per-core figure (default: this machine's cores).
// Only Node's built-in fetch is used, so it runs without npm packages.
import { readFileSync } from "node:fs";
import { cpus } from "node:os";
import { parseFlags, percentile } from "./load_common.mjs";
import { parseCsv } from "../scripts/lib/csv.mjs";

const args = parseFlags();
const url = args.url ?? "http://127.0.0.1:8080";
const levels = (args.clients ?? "1,4,16").split(",").map(Number);
const cores = Number(args.cores ?? cpus().length);
const guideRequestsPerSecond = 2e6 / 86400;
if (!args.data || !args.labels) {
  console.error("usage: node bench/bank_intent_load.mjs --data TEST.csv --labels categories.json [--url URL] " +
                "[--clients 1,4,16] [--limit N] [--cores N]");
  process.exit(2);
}

function readQueries(file, limit) {
  const [header, ...rows] = parseCsv(readFileSync(file, "utf8"), file).filter((row) => row.length > 1);
  // BANKING77's own CSV names the intent "category"; scripts/prepare-banking77.mjs writes "label".
  const text = header.indexOf("text");
  const category = header.includes("category") ? header.indexOf("category") : header.indexOf("label");
  if (text < 0 || category < 0) throw new Error(`${file}: expected the columns text and category (or label)`);
  const all = rows.map((row) => ({ text: row[text], gold: row[category] }));
  if (!limit || limit >= all.length) return all;
  return Array.from({ length: limit }, (_, i) => all[Math.floor((i * all.length) / limit)]);
}

const labels = JSON.parse(readFileSync(args.labels, "utf8"));
const queries = readQueries(args.data, Number(args.limit ?? 0));

// One classification: the predicted intent (the reply without the space the model puts first) or an error.
async function classify(query) {
  const started = performance.now();
  try {
    const response = await fetch(url + "/v1/completions", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ prompt: `${query.text}\nLabel:`, max_tokens: 24, temperature: 0,
                             guided_choice: labels, ...(args.model ? { model: args.model } : {}) }),
    });
    const body = await response.json();
    if (!response.ok) return { error: `HTTP ${response.status}: ${body.error?.message ?? ""}`, ms: performance.now() - started };
    return { predicted: body.choices[0].text.trim(), ms: performance.now() - started };
  } catch (error) {
    return { error: String(error), ms: performance.now() - started };
  }
}

// `clients` loops each take the next unanswered query until none is left.
async function runLevel(clients) {
  let next = 0, correct = 0;
  const latencies = [], errors = [];
  const started = performance.now();
  await Promise.all(Array.from({ length: clients }, async () => {
    while (next < queries.length) {
      const query = queries[next++];
      const result = await classify(query);
      if (result.error) { errors.push(result.error); continue; }
      latencies.push(result.ms);
      if (result.predicted === query.gold) ++correct;
    }
  }));
  const seconds = (performance.now() - started) / 1000;
  return { clients, queries: queries.length, correct, accuracy: correct / queries.length, errors: errors.length,
           first_error: errors[0], seconds, requests_per_second: latencies.length / seconds,
           p50_ms: percentile(latencies, 50), p99_ms: percentile(latencies, 99) };
}

await classify(queries[0]);  // the first request pays for page faults and thread start-up
const results = [];
for (const level of levels) {
  const result = await runLevel(level);
  results.push(result);
  process.stderr.write(`${level} clients: ${result.requests_per_second.toFixed(1)} requests/s\n`);
}
console.log(`\n${url}: ${queries.length} BANKING77 test queries, one of ${labels.length} intents each (guided_choice, greedy)`);
console.log("| clients | accuracy | requests/s | per core | p50 ms | p99 ms | errors | of the guide's 23/s |");
console.log("|---:|---:|---:|---:|---:|---:|---:|---:|");
for (const r of results) {
  console.log(`| ${r.clients} | ${(100 * r.accuracy).toFixed(2)} % (${r.correct}/${r.queries}) | ` +
              `${r.requests_per_second.toFixed(1)} | ${(r.requests_per_second / cores).toFixed(1)} | ` +
              `${r.p50_ms.toFixed(0)} | ${r.p99_ms.toFixed(0)} | ${r.errors} | ` +
              `${(r.requests_per_second / guideRequestsPerSecond).toFixed(2)}× |`);
}
if (results.some((r) => r.errors > 0)) console.log(`first error: ${results.find((r) => r.errors > 0).first_error}`);
console.log("JSON " + JSON.stringify({ url, cores, guide_requests_per_second: guideRequestsPerSecond, results }));
process.exit(results.some((r) => r.errors > 0) ? 1 : 0);
