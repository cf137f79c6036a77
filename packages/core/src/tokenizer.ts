/**
 * The model's own tokenizer, read from `tokenizer.json` (+ `tokenizer_config.json`) in a model directory through
 * `@huggingface/tokenizers` (pure JavaScript; ids checked identical to the Rust `tokenizers` on kjv-llama).
 * This file only loads and wraps it: packing and evaluation conventions live in data/ and @streamline/eval.
 */
import { readFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { StreamlineError } from './errors.js';

/** Options of {@link LoadedTokenizer.encode}. */
export interface EncodeOptions {
  /** Add the tokenizer's default special tokens (its post-processor, e.g. a leading BOS). Default true. */
  addSpecialTokens?: boolean;
}

/** A loaded tokenizer: what calibration packing and evaluation need from it. */
export interface LoadedTokenizer {
  /** Token ids of `text`. With `addSpecialTokens` (the default) the post-processor's special tokens are added. */
  encode(text: string, options?: EncodeOptions): Int32Array;
  /** Text of `ids`; special tokens are kept unless `skipSpecialTokens`. */
  decode(ids: ArrayLike<number>, options?: { skipSpecialTokens?: boolean }): string;
  /** Beginning-of-sequence id, when the tokenizer has one. */
  readonly bosId: number | undefined;
  /** End-of-sequence id, when the tokenizer has one. */
  readonly eosId: number | undefined;
  /** Padding id, when the tokenizer has one. */
  readonly padId: number | undefined;
  /** One more than the largest token id (base vocabulary plus added tokens). */
  readonly vocabSize: number;
  /** `model_max_length` from tokenizer_config.json, when it is set to a real length. */
  readonly modelMaxLength: number | undefined;
  /** The directory the tokenizer was loaded from. */
  readonly dir: string;
}

/** transformers writes this sentinel (int(1e30)) when a tokenizer has no maximum length. */
const NO_MAX_LENGTH = 1e29;

/**
 * Loads `tokenizer.json` (and, when present, `tokenizer_config.json` and `special_tokens_map.json`) from a model
 * directory.
 * @example
 * const tok = loadTokenizer('models/kjv-llama');
 * tok.encode('In the beginning'); // Int32Array [2045, 1190, 258, 1825, 1258] (2045 = bos)
 * @throws StreamlineError E_TOKENIZER_MISSING when the directory has no tokenizer.json;
 *   E_TOKENIZER_FORMAT when a file is not valid JSON or the library rejects it.
 */
export function loadTokenizer(modelDir: string): LoadedTokenizer {
  const dir = path.resolve(modelDir);
  const tokFile = path.join(dir, 'tokenizer.json');
  if (!existsSync(tokFile)) {
    throw new StreamlineError(
      'E_TOKENIZER_MISSING',
      `no tokenizer.json in ${dir}: Streamline needs the model's fast-tokenizer file (save it with ` +
        '`AutoTokenizer.from_pretrained(...).save_pretrained(dir)`)',
      { file: tokFile },
    );
  }
  const tokJson = readJson(tokFile);
  const configFile = path.join(dir, 'tokenizer_config.json');
  const config = existsSync(configFile) ? (readJson(configFile) as Record<string, unknown>) : {};
  const mapFile = path.join(dir, 'special_tokens_map.json');
  const specialMap = existsSync(mapFile) ? (readJson(mapFile) as Record<string, unknown>) : {};

  let hf: HfTokenizer;
  try {
    hf = new HfTokenizer(tokJson as object, config);
  } catch (e) {
    throw new StreamlineError('E_TOKENIZER_FORMAT', `${tokFile}: the tokenizer could not be built: ${(e as Error).message}`, { file: tokFile, cause: e });
  }

  const idOf = (key: string): number | undefined => {
    const content = tokenContent(config[key]) ?? tokenContent(specialMap[key]);
    return content === undefined ? undefined : hf.token_to_id(content);
  };
  let maxId = -1;
  for (const id of hf.get_vocab(true).values()) if (id > maxId) maxId = id;
  const mml = config.model_max_length;

  return {
    dir,
    bosId: idOf('bos_token'),
    eosId: idOf('eos_token'),
    padId: idOf('pad_token'),
    vocabSize: maxId + 1,
    modelMaxLength: typeof mml === 'number' && Number.isFinite(mml) && mml > 0 && mml < NO_MAX_LENGTH ? mml : undefined,
    encode(text: string, options: EncodeOptions = {}): Int32Array {
      return Int32Array.from(hf.encode(text, { add_special_tokens: options.addSpecialTokens ?? true }).ids);
    },
    decode(ids: ArrayLike<number>, options: { skipSpecialTokens?: boolean } = {}): string {
      return hf.decode(Array.from(ids), { skip_special_tokens: options.skipSpecialTokens ?? false });
    },
  };
}

function readJson(file: string): unknown {
  try {
    return JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new StreamlineError('E_TOKENIZER_FORMAT', `${file} is not valid JSON: ${(e as Error).message}`, { file, cause: e });
  }
}

/** A special token in tokenizer_config.json is either a string or `{content: string, ...}`. */
function tokenContent(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && typeof (v as { content?: unknown }).content === 'string') return (v as { content: string }).content;
  return undefined;
}
