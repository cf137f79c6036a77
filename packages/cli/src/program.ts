/**
 * The commander program. Each command lives in its own file under commands/ and registers itself here;
 * commands parse and check options, call @streamline/core or @streamline/eval, and present results.
 */
import { Command, CommanderError } from 'commander';
import { cudaUnsupported, isStreamlineError, loadModel, StreamlineError } from '@streamline/core';
import { registerDemo } from './commands/demo.js';
import { registerEval } from './commands/eval.js';
import { registerInfo } from './commands/info.js';
import { registerInspect } from './commands/inspect.js';
import { registerPrune } from './commands/prune.js';
import { registerScore } from './commands/score.js';

import { VERSION } from './version.js';

export { VERSION };

/** Builds the program (exported for tests and for the docs generator). */
export function buildProgram(): Command {
  const program = new Command('streamline')
    .description('Prune redundant layers from large language models, train a replacement, and measure what was lost.')
    .version(VERSION)
    .showHelpAfterError()
    .exitOverride();
  registerInfo(program);
  registerInspect(program);
  registerScore(program);
  registerPrune(program);
  registerEval(program, {
    loadModel: async (dir, { device }) => {
      const m = await loadModel(dir);
      if (!m.tokenizer) throw new StreamlineError('E_TOKENIZER_MISSING', `${dir} has no tokenizer.json`, { file: dir });
      return { maxLength: m.maxLength, tokenLogprobs: (seqs, o) => m.tokenLogprobs(seqs, { ...o, device }), tokenizer: m.tokenizer, cudaUnsupported: cudaUnsupported(m.description) };
    },
  });
  registerDemo(program);
  return program;
}

/** Runs the CLI and returns the exit code. Errors become `error [CODE]: message` on stderr. */
export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (e) {
    if (e instanceof CommanderError) {
      // commander already printed its message (help, version or a usage error).
      return e.exitCode;
    }
    if (isStreamlineError(e)) {
      process.stderr.write(`error [${e.code}]: ${e.message}\n`);
      return 2;
    }
    // The addon rejects with plain Errors that carry a documented E_ code; a path that forgot to re-type one is still
    // a typed error for the user, not an unexpected exception (Node's own codes are ENOENT, ERR_…, never E_…).
    const code = (e as { code?: unknown } | null)?.code;
    if (e instanceof Error && typeof code === 'string' && /^E_[A-Z0-9_]+$/.test(code)) {
      process.stderr.write(`error [${code}]: ${e.message}\n`);
      return 2;
    }
    throw e;
  }
}
