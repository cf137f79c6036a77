/** Hashes for the streamline.json manifest: files of the source model and the calibration data. */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

/** sha256 of a file, streamed in 4 MiB reads (models are large). */
export function sha256File(file: string): string {
  const h = createHash('sha256');
  const fd = fs.openSync(file, 'r');
  const buf = Buffer.allocUnsafe(4 << 20);
  try {
    for (;;) {
      const n = fs.readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      h.update(buf.subarray(0, n));
    }
  } finally {
    fs.closeSync(fd);
  }
  return h.digest('hex');
}

/** sha256 of every regular file in a directory (non-recursive), by name. */
export function hashDirectory(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const f of fs.readdirSync(dir).sort()) {
    const p = path.join(dir, f);
    if (fs.statSync(p).isFile()) out[f] = sha256File(p);
  }
  return out;
}

/** One sha256 over a file or a directory tree (sorted relative paths and their contents). */
export function hashData(p: string): string {
  const st = fs.statSync(p);
  if (st.isFile()) return sha256File(p);
  const h = createHash('sha256');
  const walk = (dir: string) => {
    for (const name of fs.readdirSync(dir).sort()) {
      const q = path.join(dir, name);
      const s = fs.statSync(q);
      if (s.isDirectory()) walk(q);
      else if (s.isFile()) h.update(`${path.relative(p, q)}\0${sha256File(q)}\n`);
    }
  };
  walk(p);
  return h.digest('hex');
}
