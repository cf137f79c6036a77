#!/usr/bin/env node
// The `streamline` executable: builds the commander program and turns thrown errors into one-line messages.
import { main } from './program.js';

main(process.argv).then(
  (code) => { process.exitCode = code; },
  (e) => { process.stderr.write(`error [E_INTERNAL]: ${(e as Error).stack ?? e}\n`); process.exitCode = 1; },
);
