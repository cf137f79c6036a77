#!/usr/bin/env node
// Produces packages/core/prebuilds/linux-x64/: the stripped addon (@streamline+core.node, as prebuildify names it)
// and the CUDA backend library streamline_cuda.so next to it (the addon dlopens it from its own folder).
//   node scripts/prebuildify.mjs               full rebuild through prebuildify (cmake-js via the node-gyp shim)
//   node scripts/prebuildify.mjs --from-build  reuse packages/core/build/Release (same compiler flags; fast)
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const core = path.join(root, 'packages', 'core');
const out = path.join(core, 'prebuilds', `${process.platform}-${process.arch}`);
const release = path.join(core, 'build', 'Release');
const addonName = '@streamline+core.node';

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { stdio: 'inherit', ...opts });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.error?.message ?? `exit ${r.status}`})`);
}

fs.rmSync(out, { recursive: true, force: true });
if (process.argv.includes('--from-build')) {
  const built = path.join(release, 'streamline.node');
  if (!fs.existsSync(built)) throw new Error(`${built} not found: run \`pnpm run build:native\` first`);
  fs.mkdirSync(out, { recursive: true });
  fs.copyFileSync(built, path.join(out, addonName));
  run('strip', ['--strip-all', path.join(out, addonName)]);
} else {
  const prebuildify = path.join(root, 'node_modules', 'prebuildify', 'bin.js');
  const shim = path.join(root, 'scripts', 'cmake-js-as-node-gyp.cjs');
  // prebuildify moves the .node out of build/Release and copies the .so files it finds there.
  run(process.execPath, [prebuildify, '--napi', '--strip', '--node-gyp', shim], { cwd: core });
}
// The CUDA backend (absent when the build machine had no nvcc): strip symbols but keep the dynamic ones.
const cuda = path.join(release, 'streamline_cuda.so');
if (fs.existsSync(cuda)) {
  fs.copyFileSync(cuda, path.join(out, 'streamline_cuda.so'));
  run('strip', ['--strip-unneeded', path.join(out, 'streamline_cuda.so')]);
}
for (const f of fs.readdirSync(out)) console.log(`prebuildify: ${path.relative(root, path.join(out, f))} ${(fs.statSync(path.join(out, f)).size / 1e6).toFixed(1)} MB`);
