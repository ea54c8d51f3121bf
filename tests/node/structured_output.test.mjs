// Structured output through the official `openai` package against a real `retort serve` on the
// tiny fixture model (random weights: without the constraint its replies are noise, so every valid
// reply here is the constraint's doing). ChatML template: the prompt does not open <think>, so the
// constraint applies from the first token.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import OpenAI from "openai";
import { fixtureModel, startServer } from "./server.mjs";

const model = fixtureModel();
const skip = model === null ? "fixture tiny-r1-qwen not found (keep ../shared beside the checkout)" : false;
let server;
let client;

before(async () => {
  if (skip) return;
  server = await startServer(model, ["--template", "chatml", "--ctx", "1024", "--max-tokens-cap", "600"]);
  client = new OpenAI({ baseURL: server.url + "/v1", apiKey: "none", maxRetries: 0 });
});

after(async () => {
  if (server) await server.stop("SIGTERM");
});

const schema = {
  type: "object",
  properties: {
    intent: { enum: ["card_arrival", "card_linking", "exchange_rate"] },
    confidence: { type: "number" },
    entities: { type: "array", items: { type: "string", maxLength: 12 }, maxItems: 2 },
    urgent: { type: "boolean" },
  },
  required: ["intent", "urgent"],
};

function validate(value) {
  assert.equal(typeof value, "object");
  assert.ok(["card_arrival", "card_linking", "exchange_rate"].includes(value.intent), JSON.stringify(value));
  assert.equal(typeof value.urgent, "boolean");
  if ("confidence" in value) assert.equal(typeof value.confidence, "number");
  if ("entities" in value) {
    assert.ok(Array.isArray(value.entities) && value.entities.length <= 2);
    for (const entity of value.entities) assert.ok(typeof entity === "string" && [...entity].length <= 12);
  }
  for (const key of Object.keys(value)) assert.ok(key in schema.properties, key);
}

test("json_schema: every reply parses and validates, streamed or not, greedy or sampled", { skip }, async () => {
  for (const [i, temperature] of [0, 1.0, 1.0, 1.0].entries()) {
    const request = { messages: [{ role: "user", content: `My card has not arrived ${i}` }], max_tokens: 400,
                      temperature, seed: i, response_format: { type: "json_schema", json_schema: { name: "t", schema } } };
    const reply = await client.chat.completions.create(request);
    validate(JSON.parse(reply.choices[0].message.content));
    assert.equal(reply.choices[0].finish_reason, "stop");
    let streamed = "";
    for await (const chunk of await client.chat.completions.create({ ...request, stream: true }))
      streamed += chunk.choices[0]?.delta?.content ?? "";
    assert.equal(streamed, reply.choices[0].message.content);
  }
});

test("json_object: an object; guided_choice: one of the labels", { skip }, async () => {
  // Free strings have no bound: a random model may not close one within max_tokens (then the reply is
  // cut, finish_reason "length", as for any reply); those that end are objects.
  let ended = 0;
  for (let seed = 0; seed < 6; ++seed) {
    const object = await client.chat.completions.create({
      messages: [{ role: "user", content: "Reply in JSON" }], max_tokens: 300, temperature: 1.0, seed,
      response_format: { type: "json_object" } });
    const content = object.choices[0].message.content;
    assert.ok(content.trimStart().startsWith("{"), content);
    if (object.choices[0].finish_reason !== "stop") continue;
    const parsed = JSON.parse(content);
    assert.ok(parsed !== null && typeof parsed === "object" && !Array.isArray(parsed));
    ++ended;
  }
  assert.ok(ended > 0, "no json_object reply ended");
  const labels = ["card_arrival", "card_linking", "cash_withdrawal", "exchange_rate"];
  for (let seed = 0; seed < 4; ++seed) {
    const reply = await client.completions.create({
      prompt: "What happened to my card?\nLabel:", max_tokens: 20, temperature: 1.0, seed, guided_choice: labels });
    assert.ok(labels.includes(reply.choices[0].text.trim()), JSON.stringify(reply.choices[0].text));
    assert.equal(reply.choices[0].finish_reason, "stop");
  }
});

test("unsupported schemas and formats are a 400 naming what is wrong", { skip }, async () => {
  const cases = [
    [{ type: "json_schema", json_schema: { schema: { type: "string", pattern: "^a" } } }, "'pattern'"],
    [{ type: "json_schema", json_schema: { schema: { type: ["string", "null"] } } }, "list of types"],
    [{ type: "json_schema" }, "json_schema.schema"],
    [{ type: "xml" }, "'xml'"],
    [{ type: 7 }, "must be a string"],
  ];
  for (const [format, words] of cases) {
    await assert.rejects(
      client.chat.completions.create({ messages: [{ role: "user", content: "x" }], max_tokens: 5, response_format: format }),
      (error) => error.status === 400 && error.message.includes(words) && error.param.startsWith("response_format"),
      JSON.stringify(format));
  }
});
