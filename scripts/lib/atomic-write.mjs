// Writes a file the way retort does: into a temporary beside it, fsync, then rename over the
// target, so a reader never sees half a file.
import fs from 'node:fs';

export function writeFileAtomically(target, text) {
  const temporary = `${target}.tmp-${process.pid}`;
  const handle = fs.openSync(temporary, 'w');
  fs.writeSync(handle, text);
  fs.fsyncSync(handle);
  fs.closeSync(handle);
  fs.renameSync(temporary, target);
}
