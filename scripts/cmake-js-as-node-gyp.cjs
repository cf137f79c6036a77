#!/usr/bin/env node
// prebuildify has no cmake-js backend: it always runs `node-gyp rebuild --target=.. --devdir=.. --arch=x64 --release`
// in the package folder. This stands in for node-gyp and runs cmake-js on the repository's CMakeLists.txt instead,
// with the output in <package>/build (prebuildify then takes build/Release/*.node and the .so files next to it).
'use strict';
const { spawnSync } = require('node:child_process');
const path = require('node:path');

const args = process.argv.slice(2);
if (args[0] !== 'rebuild' && args[0] !== 'build') {
  console.error(`cmake-js-as-node-gyp: unsupported command ${args[0] ?? '(none)'}; prebuildify only uses rebuild`);
  process.exit(2);
}
const repoRoot = path.resolve(__dirname, '..');
const cmakeJs = require.resolve('cmake-js/bin/cmake-js', { paths: [repoRoot] });
const cmd = [cmakeJs, args[0], '-d', repoRoot, '-O', path.join(process.cwd(), 'build')];
for (const a of args.slice(1)) {
  if (a === '--debug') cmd.push('--debug');
  else if (a.startsWith('--arch=')) cmd.push('--arch', a.slice('--arch='.length));
  // --target (a Node version), --devdir and --release mean nothing to a Node-API build with cmake-js.
}
const r = spawnSync(process.execPath, cmd, { stdio: 'inherit', cwd: repoRoot });
process.exit(r.status ?? 1);
