/**
 * docs/cli.md, rendered from the commander definitions: the program's and each command's `--help` text, at the
 * width commander uses when output is not a terminal (80 columns). scripts/gen-cli-docs.mjs writes it;
 * packages/cli/test/help-docs.test.ts fails when the file differs from what this returns.
 */
import type { Command } from 'commander';
import { buildProgram } from './program.js';

const HELP_WIDTH = 80;

const PREAMBLE = `# CLI reference

Every command of \`streamline\` and every option, exactly as \`--help\` prints them. This file is generated from the
commander definitions by \`node scripts/gen-cli-docs.mjs\` (after \`pnpm exec tsc -b\`); do not edit it by hand:
\`pnpm test\` fails when it differs from the current help (packages/cli/test/help-docs.test.ts).

Conventions for every command:
- Layer ranges are 0-based and half-open: \`[7, 11)\` and \`--range 7:11\` remove layers 7, 8, 9 and 10. \`h[k]\` is the
  hidden state entering layer k (\`h[0]\` the embedding output, \`h[L]\` the last layer's output before the final norm).
- Tables and results go to stdout; progress bars (on a terminal only) and status lines go to stderr.
- Errors print one line, \`error [E_CODE]: message\`, and exit with status 2 (usage errors from the option parser:
  status 1). The codes are listed in [errors.md](errors.md); [troubleshooting.md](troubleshooting.md) covers the
  common ones.
- \`--json FILE\`, \`--report FILE\` and \`--plot FILE\` are written atomically (temporary name, then rename); they, and
  \`prune\`'s output folder, \`--log\`, \`--checkpoint\` and \`--cache-dir\`, are checked before any work starts.
- Environment: \`STREAMLINE_CPU\` lowers the CPU kernel level (\`scalar\`, \`avx2\`, …; never raises it),
  \`STREAMLINE_NUM_THREADS\` sets the thread count; \`streamline info\` shows both.
`;

function helpOf(cmd: Command): string {
  cmd.configureHelp({ helpWidth: HELP_WIDTH });
  return cmd.helpInformation().trimEnd();
}

/** The Markdown of docs/cli.md for `program` (default: the real program). Deterministic. */
export function cliReference(program: Command = buildProgram()): string {
  const parts = [PREAMBLE, '## streamline\n', '```text\n' + helpOf(program) + '\n```\n'];
  for (const cmd of program.commands) {
    parts.push(`## streamline ${cmd.name()}\n`, '```text\n' + helpOf(cmd) + '\n```\n');
  }
  return parts.join('\n');
}
