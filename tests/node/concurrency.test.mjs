// 100 streaming requests from 16 concurrent clients, about a third aborted mid-stream at random:
// every request that was not aborted must give exactly the reply it gets alone (greedy), and
// afterwards the engine holds no sequence and no KV block (read from /metrics).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import OpenAI from "openai";
import { fixtureModel, startServer, metricValue } from "./server.mjs";

const model = fixtureModel();
const skip = model === null ? "fixture tiny-r1-qwen not found (keep ../shared beside the checkout)" : false;
let server;
let client;

// A small deterministic generator so a failure can be replayed (seed printed on failure).
function rng(seed) {
  let s = seed >>> 0;
  return () => { s = (s * 1664525 + 1013904223) >>> 0; return s / 2 ** 32; };
}

before(async () => {
  if (skip) return;
  // 8 running sequences: most of the 16 clients' requests queue for admission.
  server = await startServer(model, ["--template", "deepseek-r1", "--parallel", "8", "--queue", "128",
                                     "--ctx", "4096", "--kv-tokens", "4096", "--access-log", ""]);
  client = new OpenAI({ baseURL: server.url + "/v1", apiKey: "none", maxRetries: 0 });
});

after(async () => {
  if (!server) return;
  const { code } = await server.stop("SIGINT");
  assert.equal(code, 0, server.stderr);
});

const prompts = ["Tell me a story", "What is two plus two?", "Name a colour", "Write a haiku about rain"];

async function streamOnce(prompt, abortAfterChunks) {
  const stream = await client.chat.completions.create({
    model: undefined, messages: [{ role: "user", content: prompt }], max_tokens: 40, temperature: 0, stream: true });
  let reasoning = "", content = "", finish = null, chunks = 0;
  try {
    for await (const chunk of stream) {
      const choice = chunk.choices[0];
      if (choice) {
        reasoning += choice.delta.reasoning_content ?? "";
        content += choice.delta.content ?? "";
        if (choice.finish_reason) finish = choice.finish_reason;
      }
      if (++chunks === abortAfterChunks) { stream.controller.abort(); return { aborted: true }; }
    }
  } catch (error) {
    if (abortAfterChunks > 0 && error.name === "AbortError") return { aborted: true };
    throw error;
  }
  return { aborted: false, reasoning, content, finish };
}

test("100 streams from 16 clients with random aborts", { skip, timeout: 240000 }, async () => {
  const reference = [];
  for (const prompt of prompts) {
    const reply = await client.chat.completions.create({
      model: undefined, messages: [{ role: "user", content: prompt }], max_tokens: 40, temperature: 0 });
    reference.push({ reasoning: reply.choices[0].message.reasoning_content ?? "",
                     content: reply.choices[0].message.content, finish: reply.choices[0].finish_reason });
  }
  const seed = Number(process.env.RETORT_TEST_SEED || 20261127);
  const random = rng(seed);
  const jobs = Array.from({ length: 100 }, (_, i) => ({
    prompt: i % prompts.length, abortAfter: random() < 0.35 ? 1 + Math.floor(random() * 12) : 0 }));
  let next = 0, completed = 0, aborted = 0;
  const worker = async () => {
    while (next < jobs.length) {
      const job = jobs[next++];
      const result = await streamOnce(prompts[job.prompt], job.abortAfter);
      if (result.aborted) { aborted++; continue; }
      const want = reference[job.prompt];
      assert.equal(result.reasoning, want.reasoning, `seed ${seed}: reasoning of prompt ${job.prompt}`);
      assert.equal(result.content, want.content, `seed ${seed}: content of prompt ${job.prompt}`);
      assert.equal(result.finish, want.finish, `seed ${seed}: finish_reason of prompt ${job.prompt}`);
      completed++;
    }
  };
  await Promise.all(Array.from({ length: 16 }, worker));
  assert.equal(completed + aborted, 100);
  assert.ok(aborted > 10 && completed > 40, `aborted ${aborted}, completed ${completed}`);

  // Aborted streams are noticed on their next write; give the engine a moment to drop them.
  let metrics = "";
  for (let i = 0; i < 100; i++) {
    metrics = await (await fetch(server.url + "/metrics")).text();
    if (metricValue(metrics, "retort_running_sequences") === 0 && metricValue(metrics, "retort_kv_cache_blocks_used") === 0
        && metricValue(metrics, "retort_queue_depth") === 0) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(metricValue(metrics, "retort_running_sequences"), 0, metrics);
  assert.equal(metricValue(metrics, "retort_queue_depth"), 0, metrics);
  assert.equal(metricValue(metrics, "retort_kv_cache_blocks_used"), 0, metrics);
  assert.equal(metricValue(metrics, "retort_kv_cache_usage_ratio"), 0, metrics);
});

test("a non-streaming client that goes away is noticed and its sequence dropped", { skip, timeout: 60000 }, async () => {
  const count499 = async () => {
    const text = await (await fetch(server.url + "/metrics")).text();
    const match = text.match(/retort_requests_total\{endpoint="\/v1\/chat\/completions",status="499"\} (\d+)/);
    return match ? Number(match[1]) : 0;
  };
  const before = await count499();
  const controller = new AbortController();
  // 4000 greedy tokens: many seconds of work for the tiny model; the client leaves once it runs.
  const request = client.chat.completions.create(
    { model: undefined, messages: [{ role: "user", content: "Go on" }], max_tokens: 4000, temperature: 0 },
    { signal: controller.signal });
  for (let i = 0; i < 500; i++) {
    const text = await (await fetch(server.url + "/metrics")).text();
    if (metricValue(text, "retort_generated_tokens_total") > 0 && metricValue(text, "retort_running_sequences") === 1) break;
    await new Promise((r) => setTimeout(r, 10));
  }
  controller.abort();
  await assert.rejects(request);
  let metrics = "";
  for (let i = 0; i < 100; i++) {
    metrics = await (await fetch(server.url + "/metrics")).text();
    if (metricValue(metrics, "retort_running_sequences") === 0 && (await count499()) > before) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  // Had the server not noticed, the reply would have been written in full (status 200).
  assert.equal(await count499(), before + 1, metrics);
  assert.equal(metricValue(metrics, "retort_running_sequences"), 0);
  assert.equal(metricValue(metrics, "retort_kv_cache_blocks_used"), 0);
});
