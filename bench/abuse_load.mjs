// Hostile load on `retort serve` (issue 17), for a bounded time: a crowd of idle and slow
// connections (half open and silent, half trickling a request a byte at a time) held open while
// 32 streaming clients send real requests back to back and abort a random share of them midway.
// Reports every real request's outcome (answered, aborted by us, failed), end-to-end p50/p99 of
// the completed ones, and the server's RSS over the run (from /proc, so run it on the server's
// machine with --pid), to show it stays flat.
//   node bench/abuse_load.mjs --url http://127.0.0.1:8080 --pid PID [--idle 200] [--clients 32]
//        [--seconds 60] [--abort-share 0.3] [--max-tokens 32]
import fs from "node:fs";
import net from "node:net";
import { parseFlags, percentile, streamChunks } from "./load_common.mjs";

const args = parseFlags();
const url = new URL(args.url ?? "http://127.0.0.1:8080");
const pid = args.pid ? Number(args.pid) : null;
const idleCount = Number(args.idle ?? 200);
const clients = Number(args.clients ?? 32);
const seconds = Number(args.seconds ?? 60);
const abortShare = Number(args["abort-share"] ?? 0.3);
const maxTokens = Number(args["max-tokens"] ?? 32);
const deadline = performance.now() + seconds * 1000;

function residentMiB() {
  if (pid === null) return NaN;
  const status = fs.readFileSync(`/proc/${pid}/status`, "utf8");
  return Number(/VmRSS:\s+(\d+)/.exec(status)[1]) / 1024;
}

// Idle: connect and say nothing. Slow: send a request one byte every 2 s. Both reconnect when the
// server closes them, so the crowd stays for the whole run.
function holdConnection(slow) {
  if (performance.now() > deadline) return;
  const socket = net.connect(Number(url.port), url.hostname);
  const request = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n";
  let sent = 0, timer = null;
  socket.on("connect", () => {
    if (slow) timer = setInterval(() => { if (sent < request.length) socket.write(request[sent++]); }, 2000);
  });
  const again = () => { clearInterval(timer); socket.destroy(); setTimeout(() => holdConnection(slow), 100); };
  socket.on("close", again);
  socket.on("error", () => {});
  return socket;
}

async function realClient(outcomes, latencies) {
  while (performance.now() < deadline) {
    const controller = new AbortController();
    const abortAfter = Math.random() < abortShare ? 1 + Math.floor(Math.random() * 4) : Infinity;
    const started = performance.now();
    try {
      const response = await fetch(url.origin + "/v1/completions", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ prompt: "The bank said", max_tokens: maxTokens, temperature: 0.6, stream: true }),
        signal: controller.signal,
      });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      let chunks = 0;
      for await (const _ of streamChunks(response)) {
        if (++chunks >= abortAfter) { controller.abort(); break; }
      }
      if (chunks >= abortAfter) { outcomes.aborted += 1; continue; }
      outcomes.answered += 1;
      latencies.push(performance.now() - started);
    } catch (error) {
      if (controller.signal.aborted) { outcomes.aborted += 1; continue; }
      outcomes.failed += 1;
      outcomes.errors[error.message] = (outcomes.errors[error.message] ?? 0) + 1;
    }
  }
}

const rss = [residentMiB()];
const sampler = setInterval(() => rss.push(residentMiB()), 1000);
const crowd = [];
for (let i = 0; i < idleCount; ++i) crowd.push(holdConnection(i % 2 === 1));
const outcomes = { answered: 0, aborted: 0, failed: 0, errors: {} };
const latencies = [];
await Promise.all(Array.from({ length: clients }, () => realClient(outcomes, latencies)));
clearInterval(sampler);
rss.push(residentMiB());
for (const socket of crowd) socket?.destroy();

const result = {
  seconds, idle_and_slow_connections: idleCount, clients, ...outcomes,
  e2e_p50_ms: percentile(latencies, 50), e2e_p99_ms: percentile(latencies, 99),
  rss_mib_start: rss[0], rss_mib_max: Math.max(...rss.filter(Number.isFinite)), rss_mib_end: rss.at(-1),
  // Every tenth of the run: flat after the first requests warm the server up is what to look for.
  rss_mib_trace: Array.from({ length: 11 }, (_, i) => Math.round(rss[Math.min(rss.length - 1, Math.floor(i * (rss.length - 1) / 10))])),
};
console.log(`| idle+slow | clients | answered | aborted (by us) | failed | e2e p50 ms | e2e p99 ms | RSS MiB start / max / end |`);
console.log(`|---:|---:|---:|---:|---:|---:|---:|---|`);
console.log(`| ${idleCount} | ${clients} | ${outcomes.answered} | ${outcomes.aborted} | ${outcomes.failed} | ` +
            `${result.e2e_p50_ms.toFixed(0)} | ${result.e2e_p99_ms.toFixed(0)} | ` +
            `${result.rss_mib_start.toFixed(0)} / ${result.rss_mib_max.toFixed(0)} / ${result.rss_mib_end.toFixed(0)} |`);
console.log(`RSS MiB at each tenth of the run: ${result.rss_mib_trace.join(" ")}`);
console.log("JSON " + JSON.stringify(result));
process.exit(outcomes.failed > 0 ? 1 : 0);
