// What the load scripts in bench/ share: "--name value" flags and percentiles.

// process.argv's "--name value" pairs as an object.
export function parseFlags(argv = process.argv.slice(2)) {
  return Object.fromEntries(argv.reduce((pairs, arg, i, all) => {
    if (arg.startsWith("--")) pairs.push([arg.slice(2), all[i + 1]]);
    return pairs;
  }, []));
}

// The p-th percentile (0..100) of the values by the nearest-rank rule; NaN for none.
export function percentile(values, p) {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

// The JSON chunks of a streamed (SSE) OpenAI response, each with `at`, performance.now() when the
// bytes that completed it arrived; stops at the end of the body ("data: [DONE]" is skipped).
export async function* streamChunks(response) {
  const decoder = new TextDecoder();
  let buffer = "";
  for await (const bytes of response.body) {
    const at = performance.now();
    buffer += decoder.decode(bytes, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const line = buffer.slice(0, end).trim();
      buffer = buffer.slice(end + 2);
      if (line.startsWith("data: ") && line !== "data: [DONE]") yield { chunk: JSON.parse(line.slice(6)), at };
    }
  }
}
