// Paired comparison of two `retort eval classify --json` runs over the same whole test set (no
// --limit): on how many queries each model alone is right, and the exact two-sided McNemar test on
// those (binomial with p = 1/2), the right test for two classifiers scored on the same queries.
//   node scripts/compare-classifiers.mjs TEST.csv A.json B.json [--label-column label]
import fs from 'node:fs';
import { parseCsv } from './lib/csv.mjs';

const args = process.argv.slice(2);
const columnAt = args.indexOf('--label-column');
const labelColumn = columnAt >= 0 ? args.splice(columnAt, 2)[1] : 'label';
const [testFile, fileA, fileB] = args;
if (!testFile || !fileA || !fileB) {
  console.error('usage: node scripts/compare-classifiers.mjs TEST.csv A.json B.json [--label-column label]');
  process.exit(2);
}

const [header, ...rows] = parseCsv(fs.readFileSync(testFile, 'utf8'), testFile).filter((r) => r.join('') !== '');
const column = header.indexOf(labelColumn);
if (column < 0) throw new Error(`${testFile}: no '${labelColumn}' column (it has ${header.join(', ')})`);
const gold = rows.map((r) => r[column]);

// `retort eval classify --json` prints an array with one object per model.
function readRun(file) {
  const runs = JSON.parse(fs.readFileSync(file, 'utf8'));
  const run = Array.isArray(runs) ? runs[0] : runs;
  if (run.predictions.length !== gold.length)
    throw new Error(`${file}: ${run.predictions.length} predictions for ${gold.length} test queries; ` +
                    'evaluate the whole test set (no --limit) to compare query by query');
  return run;
}
const a = readRun(fileA), b = readRun(fileB);

let onlyA = 0, onlyB = 0, both = 0, neither = 0;
gold.forEach((label, i) => {
  const rightA = a.predictions[i] === label, rightB = b.predictions[i] === label;
  if (rightA && rightB) ++both;
  else if (rightA) ++onlyA;
  else if (rightB) ++onlyB;
  else ++neither;
});

// Two-sided exact binomial test of k successes in n trials at p = 1/2, in log space so that
// n in the thousands does not underflow.
function mcnemarExact(k, n) {
  if (n === 0) return 1;
  const logChoose = (m, r) => logFactorial(m) - logFactorial(r) - logFactorial(m - r);
  const tail = Math.min(k, n - k);
  let p = 0;
  for (let i = 0; i <= tail; ++i) p += Math.exp(logChoose(n, i) - n * Math.LN2);
  return Math.min(1, 2 * p);
}
function logFactorial(m) {
  let s = 0;
  for (let i = 2; i <= m; ++i) s += Math.log(i);
  return s;
}

const pct = (n) => (100 * n / gold.length).toFixed(2);
console.log(`queries: ${gold.length}`);
console.log(`A ${a.model}: ${pct(both + onlyA)} % right`);
console.log(`B ${b.model}: ${pct(both + onlyB)} % right`);
console.log(`both right ${both}, only A ${onlyA}, only B ${onlyB}, neither ${neither}`);
console.log(`exact McNemar (two-sided) p = ${mcnemarExact(onlyA, onlyA + onlyB).toPrecision(3)}`);
