// Starts a real `retort serve` for a test and stops it afterwards. The binary comes from
// RETORT_BINARY (ctest sets it); the model is the golden tiny-r1-qwen fixture from ../shared.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
export const sourceDir = path.resolve(here, "..", "..");

export function retortBinary() {
  const binary = process.env.RETORT_BINARY || path.join(sourceDir, "build", "release", "retort");
  if (!existsSync(binary)) throw new Error(`retort binary not found at ${binary}; build it or set RETORT_BINARY`);
  return binary;
}

// The fixture directory, or null (the caller skips, except under CI=true where absence fails).
export function fixtureModel(name = "tiny-r1-qwen") {
  const shared = process.env.RETORT_SHARED_DIR || path.resolve(sourceDir, "..", "shared");
  const dir = path.join(shared, "fixtures", name);
  if (existsSync(path.join(dir, "config.json"))) return dir;
  if (process.env.CI === "true") throw new Error(`fixture ${dir} is missing (CI=true)`);
  return null;
}

// `model` is MODEL, or "--config" with the file as the first extra argument, or null when the
// extra arguments name the models (--model NAME=PATH). One thread unless extraArgs set --threads.
// env: variables added to this process's environment for the server.
export async function startServer(model, extraArgs = [], env = {}) {
  const threads = extraArgs.includes("--threads") ? [] : ["--threads", "1"];
  const args = ["serve", ...(model === null ? [] : [model]), ...extraArgs, "--port", "0", ...threads];
  const child = spawn(retortBinary(), args, { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...env } });
  let stdout = "";
  let stderr = "";
  child.stderr.on("data", (d) => { stderr += d; });
  const exited = new Promise((resolve) => child.on("exit", (code, signal) => resolve({ code, signal })));
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`retort serve did not start:\n${stdout}\n${stderr}`)), 30000);
    child.stdout.on("data", (d) => {
      stdout += d;
      const match = stdout.match(/ready on (http:\/\/[^\s]+)/);
      if (match) { clearTimeout(timer); resolve(match[1]); }
    });
    exited.then(({ code }) => { clearTimeout(timer); reject(new Error(`retort serve exited (${code}):\n${stdout}\n${stderr}`)); });
  });
  return {
    url,
    pid: child.pid,
    get stdout() { return stdout; },
    get stderr() { return stderr; },
    exited,
    async stop(signal = "SIGTERM") {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}

// The value of a metric line without labels ("name value") in Prometheus text.
export function metricValue(text, name) {
  const line = text.split("\n").find((l) => l.startsWith(name + " "));
  return line === undefined ? undefined : Number(line.slice(name.length + 1));
}
