// Prepares BANKING77 (../shared/data/banking77, columns text,category) for `retort train` and
// `retort eval classify`: header text,label, each query cut to its first MAX_CHARS characters so that
// with a near character-level tokenizer every example (query + "\nLabel: " + label) fits seq_len,
// and the training queries as a JSONL prompt file for `retort distill generate`.
//   node scripts/prepare-banking77.mjs DATA_DIR OUT_DIR [MAX_CHARS=160]
//   → OUT_DIR/train.csv, OUT_DIR/test.csv, OUT_DIR/train-prompts.jsonl
import fs from 'node:fs';
import path from 'node:path';
import { writeFileAtomically } from './lib/atomic-write.mjs';
import { parseCsv } from './lib/csv.mjs';

const [dataDir, outDir, maxArg] = process.argv.slice(2);
if (!dataDir || !outDir) {
  console.error('usage: node scripts/prepare-banking77.mjs DATA_DIR OUT_DIR [MAX_CHARS]');
  process.exit(2);
}
const maxChars = Number(maxArg ?? 160);

const quote = (s) => (/[",\n\r]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s);

fs.mkdirSync(outDir, { recursive: true });
for (const split of ['train', 'test']) {
  const file = path.join(dataDir, `${split}.csv`);
  const [header, ...rows] = parseCsv(fs.readFileSync(file, 'utf8'), file);
  const text = header.indexOf('text'), label = header.indexOf('category');
  if (text < 0 || label < 0) throw new Error(`${file}: expected columns text and category, found ${header}`);
  const kept = rows.map((r) => [[...r[text]].slice(0, maxChars).join(''), r[label]]);
  writeFileAtomically(path.join(outDir, `${split}.csv`), ['text,label', ...kept.map((r) => r.map(quote).join(','))].join('\n') + '\n');
  if (split === 'train')
    writeFileAtomically(path.join(outDir, 'train-prompts.jsonl'),
                    kept.map(([query]) => JSON.stringify({ prompt: `${query}\nLabel:` })).join('\n') + '\n');
  console.log(`${split}: ${kept.length} queries → ${path.join(outDir, `${split}.csv`)}`);
}
