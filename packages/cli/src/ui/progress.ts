/**
 * Progress for long steps: a bar with ETA on a terminal (cli-progress), nothing when stderr is piped or
 * --quiet/--json-only is in force. Library code reports (done, total); this turns it into a display.
 */
import cliProgress from 'cli-progress';

export interface Progress {
  update(done: number, total: number, info?: string): void;
  stop(): void;
}

/** A progress reporter for one step; silent unless stderr is a TTY. */
export function progress(label: string, opts: { quiet?: boolean } = {}): Progress {
  if (opts.quiet || !process.stderr.isTTY) return { update() {}, stop() {} };
  const bar = new cliProgress.SingleBar(
    {
      stream: process.stderr,
      format: `${label.padEnd(10)} {bar} {percentage}% | {value}/{total} | ETA {eta_formatted} {info}`,
      hideCursor: true,
      clearOnComplete: false,
      etaBuffer: 20,
    },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  return {
    update(done, total, info = '') {
      if (!started) { bar.start(total, done, { info }); started = true; }
      else { bar.setTotal(total); bar.update(done, { info }); }
    },
    stop() { if (started) bar.stop(); },
  };
}

/** One line to stderr (status messages keep stdout clean for tables and JSON). */
export function note(message: string): void {
  process.stderr.write(message + '\n');
}
