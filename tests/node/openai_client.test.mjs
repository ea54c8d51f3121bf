// The official `openai` package against a real `retort serve` on the tiny R1-shaped fixture model,
// served with the DeepSeek-R1 chat template (its prompt opens <think>, so output is reasoning).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import OpenAI from "openai";
import { fixtureModel, startServer, metricValue } from "./server.mjs";

const model = fixtureModel();
const skip = model === null ? "fixture tiny-r1-qwen not found (keep ../shared beside the checkout)" : false;
const KEY = "test-key-123";
let server;
let client;

before(async () => {
  if (skip) return;
  server = await startServer(model, ["--template", "deepseek-r1", "--api-key", KEY, "--model-name", "tiny-r1",
                                     "--ctx", "512", "--max-tokens-cap", "256"]);
  client = new OpenAI({ baseURL: server.url + "/v1", apiKey: KEY, maxRetries: 0 });
});

after(async () => {
  if (!server) return;
  const { code } = await server.stop("SIGTERM");
  assert.equal(code, 0, "graceful shutdown exits 0\n" + server.stderr);
});

test("models lists the served model", { skip }, async () => {
  const list = await client.models.list();
  assert.deepEqual(list.data.map((m) => m.id), ["tiny-r1"]);
  const one = await client.models.retrieve("tiny-r1");
  assert.equal(one.id, "tiny-r1");
});

test("chat completion: reasoning_content is split off, usage adds up", { skip }, async () => {
  const reply = await client.chat.completions.create({
    model: "tiny-r1", messages: [{ role: "user", content: "Hello there" }], max_tokens: 12, temperature: 0,
  });
  assert.equal(reply.object, "chat.completion");
  const choice = reply.choices[0];
  assert.equal(choice.message.role, "assistant");
  assert.ok(["stop", "length"].includes(choice.finish_reason));
  // The R1 template put "<think>\n" in the prompt: the model's text is reasoning until </think>.
  assert.equal(typeof choice.message.reasoning_content, "string");
  assert.ok(choice.message.reasoning_content.length > 0);
  assert.equal(reply.usage.total_tokens, reply.usage.prompt_tokens + reply.usage.completion_tokens);
  assert.ok(reply.usage.completion_tokens >= 1 && reply.usage.completion_tokens <= 12);
  assert.ok(reply.usage.prompt_tokens > 5);
});

test("streaming chat matches the non-streaming reply and reports usage", { skip }, async () => {
  const request = { model: "tiny-r1", messages: [{ role: "user", content: "Count to three" }], max_tokens: 20,
                    temperature: 0 };
  const whole = await client.chat.completions.create(request);
  const stream = await client.chat.completions.create({ ...request, stream: true,
                                                        stream_options: { include_usage: true } });
  let reasoning = "", content = "", finish = null, usage = null, chunks = 0;
  for await (const chunk of stream) {
    chunks++;
    if (chunk.usage) usage = chunk.usage;
    const choice = chunk.choices[0];
    if (!choice) continue;
    reasoning += choice.delta.reasoning_content ?? "";
    content += choice.delta.content ?? "";
    if (choice.finish_reason) finish = choice.finish_reason;
  }
  assert.ok(chunks >= 3);
  assert.equal(reasoning, whole.choices[0].message.reasoning_content ?? "");
  assert.equal(content, whole.choices[0].message.content);
  assert.equal(finish, whole.choices[0].finish_reason);
  assert.deepEqual(usage, whole.usage);
});

test("seeded sampling repeats; logprobs come with top alternatives", { skip }, async () => {
  const request = { model: "tiny-r1", messages: [{ role: "user", content: "Pick" }], max_tokens: 8, temperature: 1.0,
                    top_p: 0.9, top_k: 50, min_p: 0.01, seed: 42, frequency_penalty: 0.3, presence_penalty: 0.2,
                    logprobs: true, top_logprobs: 3 };
  const a = await client.chat.completions.create(request);
  const b = await client.chat.completions.create(request);
  assert.equal(a.choices[0].message.reasoning_content, b.choices[0].message.reasoning_content);
  const entries = a.choices[0].logprobs.content;
  assert.equal(entries.length, a.usage.completion_tokens);
  for (const entry of entries) {
    assert.ok(entry.logprob <= 0);
    assert.equal(entry.top_logprobs.length, 3);
    assert.ok(entry.top_logprobs[0].logprob >= entry.top_logprobs[2].logprob);
  }
});

test("legacy completions, plain and streamed, with a stop string", { skip }, async () => {
  const first = await client.completions.create({ model: "tiny-r1", prompt: "Once upon a time", max_tokens: 16,
                                                  temperature: 0 });
  assert.equal(first.object, "text_completion");
  const text = first.choices[0].text;
  assert.ok(text.length > 0);
  let streamed = "";
  const stream = await client.completions.create({ model: "tiny-r1", prompt: "Once upon a time", max_tokens: 16,
                                                   temperature: 0, stream: true });
  for await (const chunk of stream) streamed += chunk.choices[0]?.text ?? "";
  assert.equal(streamed, text);
  // A stop string taken from the middle of the text cuts it there, and is not included.
  const stop = text.slice(Math.floor(text.length / 2), Math.floor(text.length / 2) + 2);
  if (stop.trim().length === 2) {
    const cut = await client.completions.create({ model: "tiny-r1", prompt: "Once upon a time", max_tokens: 16,
                                                  temperature: 0, stop: [stop] });
    assert.equal(cut.choices[0].text, text.slice(0, text.indexOf(stop)));
    assert.equal(cut.choices[0].finish_reason, "stop");
  }
});

test("errors: bad key 401, unknown model 404, prompt over the context 400 with numbers", { skip }, async () => {
  const stranger = new OpenAI({ baseURL: server.url + "/v1", apiKey: "wrong", maxRetries: 0 });
  await assert.rejects(stranger.models.list(), (e) => e.status === 401 && e.error?.type === "authentication_error");
  await assert.rejects(
    client.chat.completions.create({ model: "gpt-4o", messages: [{ role: "user", content: "x" }] }),
    (e) => e.status === 404 && e.code === "model_not_found");
  await assert.rejects(
    client.chat.completions.create({ model: "tiny-r1", messages: [{ role: "user", content: "word ".repeat(400) }] }),
    (e) => e.status === 400 && e.code === "context_length_exceeded" && /512/.test(e.message));
  await assert.rejects(
    client.chat.completions.create({ model: "tiny-r1", messages: [{ role: "user", content: "x" }], max_tokens: 1000 }),
    (e) => e.status === 400 && e.param === "max_tokens");
  await assert.rejects(
    client.chat.completions.create({ model: "tiny-r1", messages: [{ role: "user", content: "x" }], temperature: 5 }),
    (e) => e.status === 400 && e.param === "temperature");
  const big = await fetch(server.url + "/v1/chat/completions", {
    method: "POST", headers: { Authorization: `Bearer ${KEY}`, "Content-Type": "application/json" },
    body: JSON.stringify({ model: "tiny-r1", messages: [{ role: "user", content: "y".repeat(2 << 20) }] }) });
  assert.equal(big.status, 413);
  assert.equal((await big.json()).error.type, "request_too_large");
  const missing = await fetch(server.url + "/v1/nothing", { headers: { Authorization: `Bearer ${KEY}` } });
  assert.equal(missing.status, 404);
});

test("health is open, metrics need the key and count requests", { skip }, async () => {
  const health = await fetch(server.url + "/health");
  assert.equal(health.status, 200);
  assert.deepEqual(await health.json(), { status: "ok" });
  assert.equal((await fetch(server.url + "/metrics")).status, 401);
  const metrics = await (await fetch(server.url + "/metrics", { headers: { Authorization: `Bearer ${KEY}` } })).text();
  assert.match(metrics, /retort_requests_total\{endpoint="\/v1\/chat\/completions",status="200"\} \d+/);
  assert.equal(metricValue(metrics, "retort_running_sequences"), 0);
  assert.ok(metricValue(metrics, "retort_generated_tokens_total") > 0);
  assert.match(metrics, /retort_time_to_first_token_seconds_count [1-9]/);
});
