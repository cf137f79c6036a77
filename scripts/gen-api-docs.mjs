#!/usr/bin/env node
// Writes docs/api.md from the TSDoc comments of every exported symbol, read from the generated declaration files
// (packages/*/dist/**/*.d.ts, which keep the comments). TypeScript 7 has no JavaScript compiler API, so this is a
// small scanner for declaration files, not a TypeScript parser: it follows `export … from` chains from each
// package's dist/index.d.ts, finds each symbol's top-level declaration and the /** … */ comment before it, and
// prints one section per package. Deterministic (no dates, no absolute paths). Run after `pnpm exec tsc -b`.
// Usage: node scripts/gen-api-docs.mjs [--check]
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const PACKAGES = ['core', 'eval', 'cli'];

/** Top-level statements of a .d.ts file: { doc, text }, comments and strings skipped while tracking depth. */
function statements(src) {
  const out = [];
  let i = 0, depth = 0, start = -1, doc = null, pendingDoc = null;
  const n = src.length;
  const begin = (k) => { if (start < 0) { start = k; doc = pendingDoc; pendingDoc = null; } };
  const end = (k) => { out.push({ doc, text: src.slice(start, k).trim() }); start = -1; doc = null; };
  let blockStatement = false; // interface / class / enum / namespace: ends at its closing brace
  while (i < n) {
    const c = src[i];
    if (c === '/' && src[i + 1] === '*') {
      const j = src.indexOf('*/', i + 2);
      const k = j < 0 ? n : j + 2;
      if (start < 0 && depth === 0 && src[i + 2] === '*') pendingDoc = src.slice(i, k);
      i = k;
      continue;
    }
    if (c === '/' && src[i + 1] === '/') { const j = src.indexOf('\n', i); i = j < 0 ? n : j; continue; }
    if (/\s/.test(c)) { i++; continue; }
    if (start < 0) {
      begin(i);
      blockStatement = /^(export\s+)?(declare\s+)?(abstract\s+)?(interface|class|enum|namespace|module)\b/.test(src.slice(i, i + 80));
    }
    if (c === '"' || c === "'" || c === '`') {
      let j = i + 1;
      while (j < n && src[j] !== c) j += src[j] === '\\' ? 2 : 1;
      i = j + 1;
      continue;
    }
    if (c === '{' || c === '(' || c === '[') depth++;
    else if (c === '}' || c === ')' || c === ']') {
      depth--;
      if (depth === 0 && c === '}' && blockStatement) {
        let k = i + 1;
        while (k < n && src[k] === ';') k++;
        end(k); i = k; continue;
      }
    } else if (c === ';' && depth === 0) { end(i + 1); i++; continue; }
    i++;
  }
  if (start >= 0) end(n);
  return out;
}

const fileCache = new Map();
function parseFile(file) {
  if (fileCache.has(file)) return fileCache.get(file);
  const src = readFileSync(file, 'utf8');
  const decls = new Map(); // name -> [{ kind, doc, text }]
  const reexports = []; // { names: Map(exported -> original) | null (star), from }
  let fileDoc = null;
  const stmts = statements(src);
  const first = src.trimStart();
  if (first.startsWith('/**')) fileDoc = first.slice(0, first.indexOf('*/') + 2);
  for (const s of stmts) {
    const t = s.text;
    let m;
    if ((m = /^export\s+(?:type\s+)?\*\s+from\s+['"]([^'"]+)['"]/.exec(t))) {
      reexports.push({ names: null, from: m[1] });
    } else if ((m = /^export\s+(?:type\s+)?\{([^}]*)\}\s+from\s+['"]([^'"]+)['"]/.exec(t))) {
      const names = new Map();
      for (const part of m[1].split(',').map((x) => x.trim()).filter(Boolean)) {
        const pm = /^(?:type\s+)?([\w$]+)(?:\s+as\s+([\w$]+))?$/.exec(part);
        if (pm) names.set(pm[2] ?? pm[1], pm[1]);
      }
      reexports.push({ names, from: m[2] });
    } else if ((m = /^export\s+(?:declare\s+)?(?:abstract\s+)?(function|class|interface|type|const|let|var|enum|namespace)\s+([\w$]+)/.exec(t))) {
      const kind = m[1] === 'let' || m[1] === 'var' ? 'const' : m[1];
      if (!decls.has(m[2])) decls.set(m[2], []);
      decls.get(m[2]).push({ kind, doc: s.doc, text: t });
    }
  }
  const r = { decls, reexports, fileDoc };
  fileCache.set(file, r);
  return r;
}

function resolveModule(fromFile, spec) {
  const base = path.resolve(path.dirname(fromFile), spec.replace(/\.js$/, ''));
  for (const f of [`${base}.d.ts`, path.join(base, 'index.d.ts')]) if (existsSync(f)) return f;
  return null;
}

/** The exported names of a file, in order, each with the file and local name that declares it. */
function exportsOf(file, seen = new Set()) {
  if (seen.has(file)) return [];
  seen.add(file);
  const { decls, reexports } = parseFile(file);
  const out = [];
  for (const [name] of decls) out.push({ name, file, local: name });
  for (const r of reexports) {
    const target = resolveModule(file, r.from);
    if (!target) continue;
    const inner = exportsOf(target, new Set(seen));
    if (r.names === null) out.push(...inner);
    else for (const [exported, original] of r.names) {
      const hit = inner.find((e) => e.name === original);
      if (hit) out.push({ ...hit, name: exported });
    }
  }
  return out;
}

/** A /** … *\/ comment as Markdown: tags become labelled lines, @example becomes a code block. */
function renderDoc(doc) {
  if (!doc) return '';
  const lines = doc.replace(/^\/\*\*/, '').replace(/\*\/$/, '').split('\n').map((l) => l.replace(/^\s*\* ?/, '').trimEnd());
  const out = [];
  let inExample = false;
  const link = (s) => s.replace(/\{@link\s+([^}|\s]+)(?:\s*\|?\s*([^}]*))?\}/g, (_m, a, b) => `\`${(b || a).trim()}\``);
  for (const raw of lines) {
    const tag = /^@(param|returns?|throws|example|see|deprecated|default|defaultValue|remarks)\b\s*(.*)$/.exec(raw.trim());
    if (tag) {
      if (inExample) { while (out[out.length - 1] === '') out.pop(); out.push('```'); inExample = false; }
      const [, name, rest] = tag;
      if (name === 'example') { out.push('', 'Example:', '', '```ts'); inExample = true; if (rest) out.push(rest); }
      else if (name === 'param') {
        const pm = /^(\S+)\s*(.*)$/.exec(rest);
        out.push(`- **${pm ? pm[1] : rest}**${pm && pm[2] ? `: ${link(pm[2].replace(/^-\s*/, ''))}` : ''}`);
      } else if (name === 'returns' || name === 'return') out.push(`- **returns**: ${link(rest)}`);
      else if (name === 'throws') out.push(`- **throws**: ${link(rest)}`);
      else out.push(`- **@${name}** ${link(rest)}`);
      continue;
    }
    if (inExample) out.push(raw);
    else if (out.length && /^- \*\*/.test(out[out.length - 1]) && raw.startsWith(' ')) out[out.length - 1] += ` ${link(raw.trim())}`;
    else out.push(link(raw));
  }
  if (inExample) { while (out[out.length - 1] === '') out.pop(); out.push('```'); }
  return out.join('\n').replace(/\n{3,}/g, '\n\n').trim();
}

/** The declaration without private members (classes) and with `export declare` shortened to the keyword. */
function signature(text) {
  return text
    .split('\n')
    .filter((l) => !/^\s*(private|#private)\b/.test(l))
    .join('\n')
    .replace(/^export\s+declare\s+/, '')
    .replace(/^export\s+/, '');
}

const KIND_ORDER = [['function', 'Functions'], ['class', 'Classes'], ['const', 'Constants'], ['interface', 'Interfaces'], ['type', 'Types'], ['enum', 'Enums'], ['namespace', 'Namespaces']];

function packageSection(pkg) {
  const dir = path.join(root, 'packages', pkg);
  const manifest = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8'));
  const index = path.join(dir, 'dist', 'index.d.ts');
  if (!existsSync(index)) throw new Error(`${path.relative(root, index)} is missing: run pnpm exec tsc -b first`);
  const entries = exportsOf(index);
  const seen = new Set();
  const byKind = new Map(KIND_ORDER.map(([k]) => [k, []]));
  for (const e of entries) {
    if (seen.has(e.name)) continue;
    seen.add(e.name);
    const decls = parseFile(e.file).decls.get(e.local) ?? [];
    if (!decls.length) continue;
    const kind = decls[0].kind;
    byKind.get(kind)?.push({ name: e.name, file: path.relative(dir, e.file).replace(/\\/g, '/').replace(/^dist\//, 'src/').replace(/\.d\.ts$/, '.ts'), decls });
  }
  const parts = [`## ${manifest.name}\n`];
  if (manifest.description) parts.push(`${manifest.description}\n`);
  const fileDoc = renderDoc(parseFile(index).fileDoc);
  if (fileDoc) parts.push(`${fileDoc}\n`);
  const counts = KIND_ORDER.map(([k, label]) => [label, byKind.get(k).length]).filter(([, c]) => c > 0);
  parts.push(counts.map(([label, c]) => `${c} ${label.toLowerCase()}`).join(', ') + '.\n');
  for (const [k, label] of KIND_ORDER) {
    const items = byKind.get(k);
    if (!items.length) continue;
    parts.push(`### ${manifest.name}: ${label.toLowerCase()}\n`);
    for (const it of items) {
      const docs = it.decls.map((d) => renderDoc(d.doc)).filter(Boolean);
      parts.push(`#### \`${it.name}\`\n`);
      parts.push(`<sub>${manifest.name} · ${it.file}</sub>\n`);
      if (docs.length) parts.push(`${[...new Set(docs)].join('\n\n')}\n`);
      parts.push('```ts\n' + it.decls.map((d) => signature(d.text)).join('\n') + '\n```\n');
    }
  }
  return parts.join('\n');
}

const header = `# API reference

Generated from the TSDoc comments of every exported symbol by \`node scripts/gen-api-docs.mjs\` (it reads the
declaration files in \`packages/*/dist\`; run \`pnpm exec tsc -b\` first). Do not edit by hand. Ranges are 0-based
half-open \`[start, end)\`; \`h[k]\` is the hidden state entering layer k (see [method.md](method.md)).

${PACKAGES.map((p) => `- [@streamline/${p}](#streamline${p})`).join('\n')}
`;
const text = [header, ...PACKAGES.map(packageSection)].join('\n').replace(/\n{3,}/g, '\n\n');
const file = path.join(root, 'docs', 'api.md');
if (process.argv.includes('--check')) {
  const current = existsSync(file) ? readFileSync(file, 'utf8') : '';
  if (current !== text) { console.error('docs/api.md is out of date: run pnpm exec tsc -b && node scripts/gen-api-docs.mjs'); process.exit(1); }
  console.log('docs/api.md is up to date');
} else {
  writeFileSync(file, text);
  const n = (text.match(/^#### /gm) ?? []).length;
  console.log(`wrote docs/api.md (${n} symbols, ${text.split('\n').length} lines)`);
}

