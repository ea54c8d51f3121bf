// `retort serve` under hostile input (issue 17): /metrics labels only from a fixed set, so a crafted
// path cannot forge a sample line and unknown paths do not add series; malformed request fields are
// 400s, not 500s; an out-of-vocabulary token id is a 400 about the token id; keep-alive requests
// are not held back by Nagle's algorithm; the listen backlog is larger than httplib's 5; the body limit holds
// before the body is read; pipelined requests are all answered, in order.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { execFileSync } from "node:child_process";
import { fixtureModel, startServer, metricValue } from "./server.mjs";

const model = fixtureModel();
const skip = model === null ? "fixture tiny-r1-qwen not found (keep ../shared beside the checkout)" : false;
let server, port;

before(async () => {
  if (skip) return;
  server = await startServer(model, ["--template", "deepseek-r1", "--access-log", ""]);
  port = Number(new URL(server.url).port);
});

after(async () => {
  if (server) await server.stop("SIGKILL");
});

// Sends raw bytes (a request line fetch() would refuse to send) and resolves with the reply.
function rawRequest(bytes) {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, "127.0.0.1", () => socket.end(bytes));
    let reply = "";
    socket.on("data", (d) => { reply += d; });
    socket.on("end", () => resolve(reply));
    socket.on("error", reject);
  });
}

async function metricsText() {
  const response = await fetch(server.url + "/metrics");
  assert.equal(response.status, 200);
  return response.text();
}

test("a crafted path cannot add a sample line to /metrics", { skip }, async () => {
  const forged = '/x"} 1\nretort_running_sequences 42\n#';
  await rawRequest(`GET ${encodeURI(forged)} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
  await rawRequest(`GET /a%22%7D%201%0Aretort_running_sequences%2042%0A%23 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
  const text = await metricsText();
  assert.equal(metricValue(text, "retort_running_sequences"), 0);
  assert.ok(!text.includes("42"), text);
  for (const line of text.split("\n").filter((l) => l.startsWith("retort_requests_total{"))) {
    assert.match(line, /^retort_requests_total\{endpoint="(\/v1\/chat\/completions|\/v1\/completions|\/v1\/models|\/v1\/models\/\{model\}|\/health|\/metrics|\/|other)",status="\d+"\} \d+$/);
  }
});

test("2,000 unknown paths do not grow /metrics", { skip }, async () => {
  await fetch(server.url + "/unknown-first");
  const otherCount = (t) => Number(t.match(/retort_requests_total\{endpoint="other",status="404"\} (\d+)\n/)[1]);
  const first = await metricsText();
  const before = first.length;
  for (let i = 0; i < 2000; i += 50) {
    await Promise.all(Array.from({ length: 50 }, (_, j) => fetch(`${server.url}/unknown-${i + j}`).then((r) => r.text())));
  }
  const text = await metricsText();
  // Only counts change (a few more digits), never the number of series.
  assert.ok(text.length < before + 64, `grew from ${before} to ${text.length} bytes`);
  assert.equal(otherCount(text), otherCount(first) + 2000);
});

async function chatStatus(body) {
  const response = await fetch(server.url + "/v1/chat/completions", {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
  return { status: response.status, body: await response.json() };
}

test("malformed roles, part types and response_format are 400s naming the field", { skip }, async () => {
  const user = (message) => ({ messages: [message], max_tokens: 1 });
  const cases = [
    [user({ role: 5, content: "hi" }), "messages[0].role"],
    [user({ role: null, content: "hi" }), "messages[0].role"],
    [user({ role: "user", content: [{ type: 7, text: "hi" }] }), "messages[0].content"],
    [{ ...user({ role: "user", content: "hi" }), response_format: { type: 3 } }, "response_format.type"],
  ];
  for (const [body, param] of cases) {
    const { status, body: reply } = await chatStatus(body);
    assert.equal(status, 400, JSON.stringify(reply));
    assert.equal(reply.error.param, param, JSON.stringify(reply));
  }
});

test("an out-of-vocabulary token id is a 400 about the token id", { skip }, async () => {
  const response = await fetch(server.url + "/v1/completions", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ prompt: [1, 2, 2000000000], max_tokens: 1 }),
  });
  const reply = await response.json();
  assert.equal(response.status, 400);
  assert.equal(reply.error.code, "invalid_token_id");
  assert.equal(reply.error.param, "prompt");
  assert.match(reply.error.message, /token id 2000000000/);
});

test("keep-alive requests after the first are answered without a delayed-ACK wait", { skip }, async () => {
  // Ten GET /health on one connection; with Nagle's algorithm on, each after the first took ~44 ms.
  const socket = net.connect(port, "127.0.0.1");
  await new Promise((resolve) => socket.on("connect", resolve));
  socket.setNoDelay(true);
  let buffer = "";
  const replies = [];
  socket.on("data", (d) => {
    buffer += d;
    let end;
    while ((end = buffer.indexOf("}")) >= 0 && buffer.includes("\r\n\r\n")) {
      replies.push(buffer.slice(0, end + 1));
      buffer = buffer.slice(end + 1);
    }
  });
  const times = [];
  for (let i = 0; i < 10; ++i) {
    const start = process.hrtime.bigint();
    const count = replies.length;
    socket.write("GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    while (replies.length === count) await new Promise((r) => setTimeout(r, 1));
    times.push(Number(process.hrtime.bigint() - start) / 1e6);
  }
  socket.destroy();
  times.sort((a, b) => a - b);
  assert.ok(times[5] < 30, `median keep-alive round trip ${times[5].toFixed(1)} ms: ${times.join(", ")}`);
});

test("pipelined requests on one connection are all answered, in order", { skip }, async () => {
  // Three requests in one write, the middle one with a body: httplib 0.11 answered only the first.
  const body = JSON.stringify({ prompt: "Hello", max_tokens: 2, temperature: 0 });
  const bytes = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n" +
    `POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}` +
    "GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  const started = Date.now();
  // Not half-closed: a client that shuts its side is taken as gone (the server stops writing to it).
  const reply = await new Promise((resolve, reject) => {
    const socket = net.connect(port, "127.0.0.1", () => socket.write(bytes));
    let text = "";
    socket.on("data", (d) => { text += d; });
    socket.on("end", () => { socket.destroy(); resolve(text); });  // after the third, "Connection: close"
    socket.on("error", reject);
  });
  const statuses = [...reply.matchAll(/HTTP\/1\.1 (\d+) /g)].map((m) => m[1]);
  assert.deepEqual(statuses, ["200", "200", "200"], reply.slice(0, 2000));
  const health = reply.indexOf('"status"'), completion = reply.indexOf('"text_completion"'), models = reply.indexOf('"list"');
  assert.ok(health >= 0 && health < completion && completion < models, reply.slice(0, 2000));
  assert.ok(Date.now() - started < 5000, "answered without waiting for a keep-alive timeout");
});

test("the listen backlog is larger than 5", { skip }, async (t) => {
  let out;
  try {
    out = execFileSync("ss", ["-Hltn", `sport = :${port}`], { encoding: "utf8" });
  } catch {
    t.skip("ss (iproute2) is not installed");
    return;
  }
  // For a listening socket ss prints the backlog as Send-Q: State Recv-Q Send-Q Local Peer.
  const backlog = Number(out.trim().split(/\s+/)[2]);
  assert.ok(backlog > 5, out);
});

// Sends `head` and keeps the socket open (as a client still "sending" its body would); resolves
// with the reply (once its JSON error body is complete) and how long it took.
function timedReply(head) {
  return new Promise((resolve, reject) => {
    const start = Date.now();
    const socket = net.connect(port, "127.0.0.1", () => socket.write(head));
    let reply = "";
    const done = () => { socket.destroy(); resolve({ reply, ms: Date.now() - start }); };
    socket.on("data", (d) => { reply += d; if (reply.endsWith("}}")) done(); });
    socket.on("close", done);
    socket.on("error", reject);
    setTimeout(done, 40000).unref();  // a bound, not something to wait for
  });
}

test("the body limit holds before the body is read: chunked, negative and oversized lengths", { skip }, async () => {
  const post = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n";
  // A chunked body was read whole whatever --max-body said.
  const chunked = await timedReply(post + "Transfer-Encoding: chunked\r\n\r\n100000\r\n");
  assert.match(chunked.reply, /^HTTP\/1\.1 411 /, chunked.reply);
  // Content-Length: -5 got a 413, and an oversized one its 413 only after the 30 s read timeout.
  const negative = await timedReply(post + "Content-Length: -5\r\n\r\n");
  assert.match(negative.reply, /^HTTP\/1\.1 400 /, negative.reply);
  const oversized = await timedReply(post + "Content-Length: 999999999\r\n\r\n");
  assert.match(oversized.reply, /^HTTP\/1\.1 413 /, oversized.reply);
  for (const { reply, ms } of [chunked, negative, oversized]) {
    assert.ok(ms < 3000, `answered after ${ms} ms: ${reply}`);
    assert.match(reply, /Connection: close/i, reply);  // the unread body ends the connection
  }
});

test("idle and slow connections holding every configured HTTP thread do not stall a real request", { skip }, async () => {
  // More than the default thread count (parallel 16 + queue 64 + 8): half say nothing, half send a
  // request line and stop, as slow or idle keep-alive clients do.
  const held = [];
  for (let i = 0; i < 120; ++i) {
    const socket = net.connect(port, "127.0.0.1", () => { if (i % 2) socket.write("GET /health HTTP/1.1\r\n"); });
    socket.on("error", () => {});
    held.push(socket);
  }
  try {
    await new Promise((resolve) => setTimeout(resolve, 300));
    const started = Date.now();
    // A bound, not a speed test: without spare threads this waited for the 15-30 s timeouts.
    const response = await fetch(server.url + "/v1/completions", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ prompt: "hello", max_tokens: 4, temperature: 0 }),
      signal: AbortSignal.timeout(8000),
    });
    assert.equal(response.status, 200, await response.text());
    assert.ok(Date.now() - started < 8000);
  } finally {
    for (const socket of held) socket.destroy();
  }
});
