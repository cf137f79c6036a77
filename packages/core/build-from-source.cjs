#!/usr/bin/env node
// Builds the native addon from source into <this package>/build/Release, which node-gyp-build prefers over the
// prebuilt file in prebuilds/. Never run automatically (the package has no install script). Needs a C++17
// compiler, CMake >= 3.18, and cmake-js and node-addon-api installed in the consuming project; uses OpenBLAS,
// Eigen and a CUDA compiler when they are found. Extra arguments go to cmake-js (e.g. --CDSTREAMLINE_WITH_CUDA=OFF).
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const pkgDir = __dirname;
// Published package: the sources sit next to this file. In the repository: the root CMakeLists.txt.
const sourceDir = fs.existsSync(path.join(pkgDir, 'CMakeLists.txt')) ? pkgDir : path.resolve(pkgDir, '..', '..');
let cmakeJs;
try {
  cmakeJs = require.resolve('cmake-js/bin/cmake-js', { paths: [process.cwd(), sourceDir, pkgDir] });
  require.resolve('node-addon-api', { paths: [process.cwd(), sourceDir, pkgDir] });
} catch {
  console.error('build-from-source: cmake-js and node-addon-api are needed; install them first:\n' +
    '  npm install --save-dev cmake-js@8.0.0 node-addon-api@8.9.2');
  process.exit(1);
}
const args = [cmakeJs, 'rebuild', '-d', sourceDir, '-O', path.join(pkgDir, 'build'), ...process.argv.slice(2)];
const r = spawnSync(process.execPath, args, { stdio: 'inherit', cwd: sourceDir });
process.exit(r.status ?? 1);
