/**
 * Installs Streamline like a user: scripts/install-test.sh packs the three packages (prebuilt addon from the
 * existing build), `npm install`s the tarballs into an empty directory and, with a PATH that has no compiler,
 * cmake or nvcc, runs `npx streamline --help`, `info`, `inspect` and a short `score` on ../shared's demo model
 * (those two are skipped by the script when ../shared is absent). Also checks the packed manifests: no
 * `workspace:` ranges and no `@streamline/source` export condition (src/ is not shipped).
 * Skips with a message when npm is not available.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const npm = spawnSync('npm', ['--version'], { encoding: 'utf8' });

if (npm.status !== 0) {
  console.log('skip: npm not found; the installation test needs it');
} else {
  test('pack, npm install the tarballs, run streamline without build tools on PATH', () => {
    // A user's environment: no test-runner conditions.
    const env = { ...process.env, NODE_OPTIONS: '' };
    const r = spawnSync('bash', [path.join(repoRoot, 'scripts', 'install-test.sh')], { cwd: repoRoot, env, encoding: 'utf8', timeout: 600_000 });
    const out = `${r.stdout ?? ''}${r.stderr ?? ''}`;
    if (r.status !== 0) assert.unreachable(`install-test.sh exited ${r.status ?? r.signal}:\n${out}`);
    assert.match(out, /Usage: streamline|install-test: npx streamline --help/);
    assert.match(out, /cpu {3}level \w+/, 'streamline info printed the kernel level');
    assert.match(out, /install-test: ok/);
    for (const line of out.split('\n')) if (/^install-test: (ok|skip|score\.json)|^cpu |^cuda /.test(line)) console.log(`  ${line}`);

    const tarballs = readdirSync(path.join(repoRoot, 'dist-packages')).filter((f) => f.endsWith('.tgz')).sort();
    assert.equal(tarballs.map((f) => f.replace(/-\d+\.\d+\.\d+.*\.tgz$/, '')), ['streamline-cli', 'streamline-core', 'streamline-eval']);
    for (const f of tarballs) {
      const manifest = spawnSync('tar', ['-xOzf', path.join(repoRoot, 'dist-packages', f), 'package/package.json'], { encoding: 'utf8' }).stdout;
      assert.not.match(manifest, /workspace:/, `${f}: workspace: range left in package.json`);
      assert.not.match(manifest, /@streamline\/source/, `${f}: exports keep the @streamline/source condition`);
      const files = spawnSync('tar', ['-tzf', path.join(repoRoot, 'dist-packages', f)], { encoding: 'utf8' }).stdout.split('\n');
      assert.ok(files.includes('package/LICENSE'), `${f}: LICENSE`);
      assert.ok(files.includes('package/README.md'), `${f}: README.md`);
      assert.ok(!files.some((p) => p.startsWith('package/src/')), `${f}: ships src/`);
      if (f.startsWith('streamline-core')) {
        assert.ok(files.includes('package/prebuilds/linux-x64/@streamline+core.node'), `${f}: prebuilt addon`);
        assert.ok(files.includes('package/CMakeLists.txt') && files.includes('package/build-from-source.cjs'), `${f}: native sources`);
      }
    }
  });
}

test.run();
