// Operations of `retort serve` started from a YAML config: keys from the file, CORS when asked for,
// a full queue answering 429 with Retry-After, the per-request timeout, and a graceful SIGTERM that
// lets the in-flight stream finish and exits 0.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fixtureModel, startServer } from "./server.mjs";

const model = fixtureModel();
const skip = model === null ? "fixture tiny-r1-qwen not found (keep ../shared beside the checkout)" : false;
const KEY = "ops-key";
const ORIGIN = "http://chat.example.test";
let server, dir;
const auth = { Authorization: `Bearer ${KEY}`, "Content-Type": "application/json" };

before(async () => {
  if (skip) return;
  dir = mkdtempSync(path.join(os.tmpdir(), "retort-serve-"));
  const config = path.join(dir, "serve.yaml");
  writeFileSync(config, [
    `model: ${model}`,
    "security:", `  api_key: [other-key, ${KEY}]`, "  timeout: 0.6", `  cors: "${ORIGIN}"`,
    // f32 KV: the greedy path that runs past the timeout without meeting an end token was found with it.
    "engine:", "  parallel: 1", "  queue: 1", "  ctx: 4096", "  kv_type: f32",
    "behaviour:", "  template: deepseek-r1", "  model_name: ops-model", "operations:", '  access_log: ""', ""].join("\n"));
  server = await startServer("--config", [config]);
});

after(async () => {
  if (server) await server.stop("SIGKILL");
  if (dir) rmSync(dir, { recursive: true, force: true });
});

// Reads an SSE response to the end: the finish_reason and the usage chunk.
async function readStream(response, onFirstChunk = () => {}) {
  const decoder = new TextDecoder();
  let buffer = "", finish = null, usage = null, first = true, done = false;
  for await (const bytes of response.body) {
    buffer += decoder.decode(bytes, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const line = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      if (!line.startsWith("data: ")) continue;
      if (line === "data: [DONE]") { done = true; continue; }
      const chunk = JSON.parse(line.slice(6));
      if (first) { first = false; onFirstChunk(); }
      if (chunk.usage) usage = chunk.usage;
      if (chunk.choices[0]?.finish_reason) finish = chunk.choices[0].finish_reason;
    }
  }
  return { finish, usage, done };
}

function chat(maxTokens, extra = {}) {
  return fetch(server.url + "/v1/chat/completions", {
    method: "POST", headers: auth, ...extra,
    body: JSON.stringify({ model: "ops-model", messages: [{ role: "user", content: "Go on" }], max_tokens: maxTokens,
                           temperature: 0, stream: true, stream_options: { include_usage: true } }) });
}

test("the config file's keys apply: model name, keys, context", { skip }, async () => {
  const models = await (await fetch(server.url + "/v1/models", { headers: auth })).json();
  assert.equal(models.data[0].id, "ops-model");
  assert.equal(models.data[0].context_length, 4096);
  const other = await fetch(server.url + "/v1/models", { headers: { Authorization: "Bearer other-key" } });
  assert.equal(other.status, 200);
  assert.equal((await fetch(server.url + "/v1/models")).status, 401);
});

test("CORS answers the configured origin", { skip }, async () => {
  const preflight = await fetch(server.url + "/v1/chat/completions", { method: "OPTIONS",
    headers: { Origin: ORIGIN, "Access-Control-Request-Method": "POST" } });
  assert.equal(preflight.status, 204);
  assert.equal(preflight.headers.get("access-control-allow-origin"), ORIGIN);
  const health = await fetch(server.url + "/health", { headers: { Origin: ORIGIN } });
  assert.equal(health.headers.get("access-control-allow-origin"), ORIGIN);
});

test("a full queue answers 429 with Retry-After; the timeout ends long requests", { skip, timeout: 60000 }, async () => {
  // One slot, one queue place: the first request runs, the second waits, the third is refused.
  const running = await chat(3900);
  let firstChunk;
  const started = new Promise((resolve) => { firstChunk = resolve; });
  const runningDone = readStream(running, firstChunk);
  await started;
  const queued = await chat(3900);
  assert.equal(queued.status, 200);
  const refused = await chat(10);
  assert.equal(refused.status, 429);
  assert.equal(refused.headers.get("retry-after"), "1");
  const body = await refused.json();
  assert.equal(body.error.type, "rate_limit_error");
  // 3900 greedy tokens take the tiny model (about 2.5 s on a quiet 2-core machine) far longer than
  // the 0.6 s timeout in the config.
  for (const result of [await runningDone, await readStream(queued)]) {
    assert.equal(result.finish, "length");
    assert.ok(result.usage.completion_tokens < 3900, JSON.stringify(result.usage));
    assert.ok(result.done);
  }
});

test("SIGTERM lets the in-flight stream finish, refuses new work, exits 0", { skip, timeout: 60000 }, async () => {
  const response = await chat(200);  // well inside the 0.6 s timeout
  let sent = false;
  const result = await readStream(response, () => { sent = true; server.stop("SIGTERM"); });
  assert.ok(sent);
  assert.equal(result.finish, "length");
  assert.equal(result.usage.completion_tokens, 200);
  assert.ok(result.done);
  // The stream can end before the server has taken the signal in; new work is refused from then on.
  for (let i = 0; i < 100 && !/SIGTERM received/.test(server.stdout); ++i) await new Promise((r) => setTimeout(r, 20));
  const late = await chat(5).then((r) => r.status, () => "refused");
  assert.ok(late === 503 || late === "refused", `after SIGTERM: ${late}`);
  const { code } = await server.exited;
  assert.equal(code, 0, server.stderr);
  assert.match(server.stdout, /SIGTERM received/);
});

test("a model that cannot be loaded ends the server with exit 1 and says why", { timeout: 30000 }, async () => {
  const { spawnSync } = await import("node:child_process");
  const { retortBinary } = await import("./server.mjs");
  const result = spawnSync(retortBinary(), ["serve", "/nonexistent/model", "--port", "0"], { encoding: "utf8",
                                                                                            timeout: 20000 });
  assert.equal(result.status, 1, result.stdout + result.stderr);
  assert.match(result.stderr, /does not exist/);
});
