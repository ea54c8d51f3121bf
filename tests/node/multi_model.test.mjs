// Several models in one `retort serve` (--model NAME=PATH, and a config's `models:` list), through
// the official `openai` package: the tiny-r1-qwen fixture under two names and tiny-r1-llama beside
// them. Interleaved streamed greedy replies equal each model's replies when it is served alone;
// /v1/models lists them all, an unknown or absent model is a 404 naming them, /metrics labels
// the engine's numbers by model.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import OpenAI from "openai";
import { fixtureModel, startServer } from "./server.mjs";

const qwen = fixtureModel("tiny-r1-qwen");
const llama = fixtureModel("tiny-r1-llama");
const skip = qwen === null || llama === null ? "fixtures tiny-r1-qwen/llama not found (keep ../shared beside the checkout)" : false;
// Two threads, so that the engines' parallel loops really meet in the one shared thread pool.
const common = ["--template", "chatml", "--ctx", "512", "--threads", "2"];
const names = ["qwen-a", "qwen-b", "llama"];
let multi;
let qwenAlone;
let llamaAlone;

before(async () => {
  if (skip) return;
  [multi, qwenAlone, llamaAlone] = await Promise.all([
    startServer(null, ["--model", `qwen-a=${qwen}`, "--model", `qwen-b=${qwen}`, "--model", `llama=${llama}`, ...common]),
    startServer(qwen, common),
    startServer(llama, common),
  ]);
});

after(async () => {
  for (const server of [multi, qwenAlone, llamaAlone]) if (server) await server.stop("SIGTERM");
});

const client = (server) => new OpenAI({ baseURL: server.url + "/v1", apiKey: "none", maxRetries: 0 });

async function reply(server, model, content, stream) {
  const request = { model, messages: [{ role: "user", content }], temperature: 0, max_tokens: 24 };
  if (!stream) return (await client(server).chat.completions.create(request)).choices[0].message.content;
  let text = "";
  for await (const chunk of await client(server).chat.completions.create({ ...request, stream: true })) {
    assert.equal(chunk.model, model);
    text += chunk.choices[0]?.delta?.content ?? "";
  }
  return text;
}

test("/v1/models lists every served model, and each is found by its id", { skip }, async () => {
  const listed = await client(multi).models.list();
  assert.deepEqual(listed.data.map((m) => m.id), names);
  for (const name of names) assert.equal((await client(multi).models.retrieve(name)).id, name);
});

test("interleaved streamed greedy replies equal each model's replies served alone", { skip }, async () => {
  const prompts = ["hello", "what is my balance", "card arrival"];
  const qwenReplies = [];
  const llamaReplies = [];
  for (const p of prompts) qwenReplies.push(await reply(qwenAlone, "tiny-r1-qwen", p, false));
  for (const p of prompts) llamaReplies.push(await reply(llamaAlone, "tiny-r1-llama", p, false));
  // Every model and prompt at once, so the three engines step side by side on the shared threads.
  const jobs = [];
  for (let round = 0; round < 2; ++round) {
    prompts.forEach((p, i) => {
      jobs.push(reply(multi, "qwen-a", p, true).then((text) => assert.equal(text, qwenReplies[i], `qwen-a: ${p}`)));
      jobs.push(reply(multi, "llama", p, true).then((text) => assert.equal(text, llamaReplies[i], `llama: ${p}`)));
      jobs.push(reply(multi, "qwen-b", p, true).then((text) => assert.equal(text, qwenReplies[i], `qwen-b: ${p}`)));
    });
  }
  await Promise.all(jobs);
  assert.ok([...qwenReplies, ...llamaReplies].every((text) => text.length > 0));
  assert.notDeepEqual(qwenReplies, llamaReplies, "the two fixtures should answer differently");
});

test("an unknown or absent model is a 404 that names the served models", { skip }, async () => {
  await assert.rejects(reply(multi, "gpt-4", "hello", false), (error) => {
    assert.equal(error.status, 404);
    assert.match(error.message, /the model 'gpt-4' does not exist; this server serves 'qwen-a', 'qwen-b', 'llama'/);
    return true;
  });
  // The openai client always sends a model; a bare HTTP request may leave it out.
  const response = await fetch(multi.url + "/v1/chat/completions", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ messages: [{ role: "user", content: "hi" }], max_tokens: 4 }),
  });
  assert.equal(response.status, 404);
  const body = await response.json();
  assert.equal(body.error.code, "model_not_found");
  assert.match(body.error.message, /names no model.*'qwen-a', 'qwen-b', 'llama'/);
  const unknownId = await fetch(multi.url + "/v1/models/gpt-4");
  assert.equal(unknownId.status, 404);
  assert.match((await unknownId.json()).error.message, /this server serves 'qwen-a', 'qwen-b', 'llama'/);
});

test("/metrics labels every engine metric by model", { skip }, async () => {
  await reply(multi, "llama", "hello", false);
  await reply(multi, "qwen-b", "hello", false);
  const metrics = await (await fetch(multi.url + "/metrics")).text();
  for (const name of names) {
    const generated = metrics.match(new RegExp(`^retort_generated_tokens_total\\{model="${name}"\\} (\\S+)$`, "m"));
    assert.ok(generated && Number(generated[1]) > 0, `${name}: ${metrics}`);
    assert.match(metrics, new RegExp(`^retort_kv_cache_blocks_total\\{model="${name}"\\} [1-9]`, "m"));
  }
  assert.equal((metrics.match(/^# TYPE retort_queue_depth /gm) ?? []).length, 1);
  assert.doesNotMatch(metrics, /^retort_queue_depth /m);
  assert.match(metrics, /^retort_ready 1$/m);
});

test("a config's models: list serves them; repeated names are refused", { skip }, async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), "retort-multi-"));
  try {
    const config = path.join(dir, "serve.yaml");
    writeFileSync(config, ["models:", `  - {name: first, path: ${qwen}}`, `  - second=${llama}`, "template: chatml",
                           "ctx: 512", ""].join("\n"));
    const server = await startServer("--config", [config]);
    try {
      assert.deepEqual((await client(server).models.list()).data.map((m) => m.id), ["first", "second"]);
      assert.equal(await reply(server, "second", "hello", true), await reply(llamaAlone, "tiny-r1-llama", "hello", false));
    } finally {
      await server.stop("SIGTERM");
    }
    await assert.rejects(startServer(null, ["--model", `same=${qwen}`, "--model", `same=${llama}`]),
                         /two models are named 'same'/);
    await assert.rejects(startServer(null, ["--model", qwen]), /--model expects NAME=PATH/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
