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
