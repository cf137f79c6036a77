import type { Command } from 'commander';
import { runtimeInfo } from '@streamline/core';

/** `streamline info`: the CPU kernel level, threads, BLAS and CUDA availability. */
export function registerInfo(program: Command): void {
  program
    .command('info')
    .description('Show the CPU kernel level, thread count, BLAS and CUDA availability')
    .option('--json', 'print JSON instead of text')
    .action((opts: { json?: boolean }) => {
      const info = runtimeInfo();
      if (opts.json) {
        process.stdout.write(JSON.stringify(info, null, 2) + '\n');
        return;
      }
      const c = info.cpu, g = info.cuda;
      process.stdout.write(
        `cpu   level ${c.level} (detected ${c.detected}), ${c.threads} threads, blas ${c.blas}${c.blasCore ? ` (${c.blasCore})` : ''}\n` +
          `cuda  ${g.available ? `${g.deviceCount} device(s): ${g.deviceName}` : `not available: ${g.reason || 'not compiled'}`}\n`,
      );
    });
}
