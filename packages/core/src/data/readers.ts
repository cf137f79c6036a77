/**
 * Text data readers shared by calibration and evaluation: plain `.txt` (one document per file), JSONL (one JSON
 * object per line, a string field per document), Parquet (one column, through hyparquet) and directories of those.
 * Readers only read; tokenization and packing are in pack.ts, task schemas in @streamline/eval.
 */
import { createReadStream, promises as fsp, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects, parquetSchema } from 'hyparquet';
import { StreamlineError } from '../errors.js';

/** File kinds the readers understand, by extension. */
export type DataFileKind = 'txt' | 'jsonl' | 'parquet';

/** One document and where it came from (`line` for JSONL, `row` for Parquet, both 1-based). */
export interface SourceDocument {
  text: string;
  file: string;
  line?: number;
  row?: number;
}

/** Options of {@link readDocuments}. */
export interface ReadDocumentsOptions {
  /** JSONL / Parquet field holding the text. Default `text`. */
  field?: string;
}

const KINDS: Record<string, DataFileKind> = { '.txt': 'txt', '.jsonl': 'jsonl', '.parquet': 'parquet' };

/** The kind of a data file from its extension, or undefined when it is not one the readers know. */
export function dataFileKind(file: string): DataFileKind | undefined {
  return KINDS[path.extname(file).toLowerCase()];
}

/**
 * The data files under `source`: the file itself, or for a directory every `.txt`, `.jsonl` and `.parquet` file in
 * it and its subdirectories, visited in name order (code-point order of each entry's name, recursing into a
 * directory where its name sorts). Hidden entries (starting with ".") and other extensions are skipped.
 * @throws StreamlineError E_DATA_MISSING when `source` does not exist or a directory holds no data file;
 *   E_DATA_FORMAT when a single file has an extension the readers do not know.
 */
export function listDataFiles(source: string): string[] {
  let st;
  try {
    st = statSync(source);
  } catch {
    throw new StreamlineError('E_DATA_MISSING', `data path ${source} does not exist`, { file: source });
  }
  if (!st.isDirectory()) {
    if (!dataFileKind(source)) {
      throw new StreamlineError('E_DATA_FORMAT', `${source}: expected a .txt, .jsonl or .parquet file (or a directory of them)`, { file: source });
    }
    return [source];
  }
  const out: string[] = [];
  walk(source, out);
  if (out.length === 0) {
    throw new StreamlineError('E_DATA_MISSING', `directory ${source} holds no .txt, .jsonl or .parquet file`, { file: source });
  }
  return out;
}

function walk(dir: string, out: string[]): void {
  const names = readdirSync(dir).filter((n) => !n.startsWith('.')).sort(compareCodePoints);
  for (const name of names) {
    const p = path.join(dir, name);
    if (statSync(p).isDirectory()) walk(p, out);
    else if (dataFileKind(p)) out.push(p);
  }
}

function compareCodePoints(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Every document under `source`, in order: files as {@link listDataFiles} orders them; within a JSONL file, line
 * order (blank lines are skipped); within a Parquet file, row order. A `.txt` file is one document (a leading
 * UTF-8 byte-order mark is dropped).
 * @throws StreamlineError E_DATA_FORMAT naming `file:line` for a JSONL line that is not a JSON object or whose
 *   field is missing or not a string, and `file` (row n) for a Parquet file without the column or with a non-string
 *   value; E_DATA_MISSING as listDataFiles.
 */
export async function* readDocuments(source: string, options: ReadDocumentsOptions = {}): AsyncGenerator<SourceDocument> {
  const field = options.field ?? 'text';
  for (const file of listDataFiles(source)) {
    const kind = dataFileKind(file)!;
    if (kind === 'txt') {
      let text = await fsp.readFile(file, 'utf8');
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
      yield { text, file };
    } else if (kind === 'jsonl') {
      for await (const { value, line } of readJsonlObjects(file)) {
        const v = value[field];
        if (typeof v !== 'string') {
          throw new StreamlineError(
            'E_DATA_FORMAT',
            `${file}:${line}: ${v === undefined ? `no field "${field}"` : `field "${field}" is ${describe(v)}, expected a string`}` +
              (v === undefined ? ` (fields: ${Object.keys(value).join(', ') || 'none'}; choose one with --field)` : ''),
            { file },
          );
        }
        yield { text: v, file, line };
      }
    } else {
      const rows = await readParquetRows(file, [field]);
      for (let i = 0; i < rows.length; i++) {
        const v = rows[i]![field];
        if (typeof v !== 'string') {
          throw new StreamlineError('E_DATA_FORMAT', `${file} (row ${i + 1}): column "${field}" is ${describe(v)}, expected a string`, { file });
        }
        yield { text: v, file, row: i + 1 };
      }
    }
  }
}

/**
 * The documents of a text file or directory, as an array (see {@link readDocuments}). Perplexity uses it: the
 * chunked convention joins these with "\n\n", the rolling one scores each separately.
 * @example
 * const docs = await readTextDocuments('data/kjv/test.jsonl'); // one string per line's "text"
 */
export async function readTextDocuments(source: string, field = 'text'): Promise<string[]> {
  const out: string[] = [];
  for await (const d of readDocuments(source, { field })) out.push(d.text);
  return out;
}

/**
 * The records (JSON objects) of one JSONL or Parquet file, in order; evaluation tasks read their schemas from these.
 * @throws StreamlineError E_DATA_FORMAT naming `file:line` for a JSONL line that is not a JSON object, or for a file
 *   that is neither JSONL nor Parquet; E_DATA_MISSING when the file does not exist.
 */
export async function readRecords(file: string): Promise<Record<string, unknown>[]> {
  try {
    statSync(file);
  } catch {
    throw new StreamlineError('E_DATA_MISSING', `data file ${file} does not exist`, { file });
  }
  const kind = dataFileKind(file);
  if (kind === 'jsonl') {
    const out: Record<string, unknown>[] = [];
    for await (const { value } of readJsonlObjects(file)) out.push(value);
    return out;
  }
  if (kind === 'parquet') return readParquetRows(file);
  throw new StreamlineError('E_DATA_FORMAT', `${file}: expected a .jsonl or .parquet file`, { file });
}

async function* readJsonlObjects(file: string): AsyncGenerator<{ value: Record<string, unknown>; line: number }> {
  const rl = createInterface({ input: createReadStream(file, { encoding: 'utf8' }), crlfDelay: Infinity });
  let line = 0;
  try {
    for await (const raw of rl) {
      line++;
      const s = line === 1 && raw.charCodeAt(0) === 0xfeff ? raw.slice(1) : raw;
      if (s.trim() === '') continue;
      let value: unknown;
      try {
        value = JSON.parse(s);
      } catch (e) {
        throw new StreamlineError('E_DATA_FORMAT', `${file}:${line}: not valid JSON (${(e as Error).message})`, { file });
      }
      if (value === null || typeof value !== 'object' || Array.isArray(value)) {
        throw new StreamlineError('E_DATA_FORMAT', `${file}:${line}: expected a JSON object, got ${describe(value)}`, { file });
      }
      yield { value: value as Record<string, unknown>, line };
    }
  } finally {
    rl.close();
  }
}

async function readParquetRows(file: string, columns?: string[]): Promise<Record<string, unknown>[]> {
  let buffer, metadata;
  try {
    buffer = await asyncBufferFromFile(file);
    metadata = await parquetMetadataAsync(buffer);
  } catch (e) {
    throw new StreamlineError('E_DATA_FORMAT', `${file}: not a readable Parquet file (${(e as Error).message})`, { file, cause: e });
  }
  const top = parquetSchema(metadata).children.map((c) => c.element.name);
  if (columns) {
    const missing = columns.filter((c) => !top.includes(c));
    if (missing.length) {
      throw new StreamlineError('E_DATA_FORMAT', `${file}: no column "${missing[0]}" (columns: ${top.join(', ')}; choose one with --field)`, { file });
    }
  }
  try {
    const rows = (await parquetReadObjects({ file: buffer, metadata, columns })) as Record<string, unknown>[];
    return rows.map(normaliseParquetValue) as Record<string, unknown>[];
  } catch (e) {
    throw new StreamlineError('E_DATA_FORMAT', `${file}: could not decode Parquet data (${(e as Error).message}; ` +
      'hyparquet reads uncompressed and snappy files; other codecs need hyparquet-compressors)', { file, cause: e });
  }
}

/** bigint (INT64 columns) becomes number when it is safe, so task labels compare as plain integers. */
function normaliseParquetValue(v: unknown): unknown {
  if (typeof v === 'bigint') return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  if (Array.isArray(v)) return v.map(normaliseParquetValue);
  if (v && typeof v === 'object' && !(v instanceof Uint8Array) && !(v instanceof Date)) {
    const o: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) o[k] = normaliseParquetValue(x);
    return o;
  }
  return v;
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return typeof v === 'object' ? 'an object' : `a ${typeof v}`;
}
