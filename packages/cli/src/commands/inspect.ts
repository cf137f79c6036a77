import type { Command } from 'commander';
import { assertModelValid, inspect, type DTypeHistogram, type FileReport, type ModelReport } from '@streamline/core';

const fmt = (n: number) => n.toLocaleString('en-US');

function dtypeLine(h: DTypeHistogram): string {
  return Object.entries(h).map(([d, e]) => `${d} (${e.tensors} tensors, ${fmt(e.parameters)} params)`).join(', ');
}

/** Layer indices as half-open runs: [1, 2, 3, 7] -> "[1, 4), [7, 8)". */
function ranges(layers: readonly number[]): string {
  const out: string[] = [];
  for (let i = 0; i < layers.length; ) {
    let j = i;
    while (j + 1 < layers.length && layers[j + 1] === layers[j]! + 1) j++;
    out.push(`[${layers[i]}, ${layers[j]! + 1})`);
    i = j + 1;
  }
  return out.join(', ');
}


/**
 * " (longrope, 96 of 128 dims)": the scaling type when not the default, and a partial rotation; Gemma 3's sliding
 * layers: " (base 1000000; sliding layers: base 10000)".
 */
function ropeDetail(r: ModelReport): string {
  const parts: string[] = [];
  if (r.rope?.sliding) parts.push(`base ${r.rope.theta}`);
  if (r.rope && r.rope.type !== 'default') parts.push(r.rope.type);
  if (r.rope && r.rope.rotaryDim < r.headDim) parts.push(`${r.rope.rotaryDim} of ${r.headDim} dims`);
  if (r.rope?.sliding) parts.push(`sliding layers: base ${r.rope.sliding.theta}${r.rope.sliding.type !== 'default' ? ` ${r.rope.sliding.type}` : ''}`);
  return parts.length ? ` (${parts.join(', ')})` : '';
}

function modelText(r: ModelReport): string {
  const per = r.parameters.perLayer;
  const uniform = per.every((p) => p === per[0]);
  const lines = [
    `model         ${r.path}`,
    `architecture  ${r.architecture} (model_type ${r.modelType})`,
    `layers        ${r.layers}`,
    `hidden        ${r.hidden}   heads ${r.heads}   kv heads ${r.kvHeads}   head dim ${r.headDim}   intermediate ${r.intermediate}`,
    `vocab         ${r.vocab}   max positions ${r.maxPositions}   tied embeddings ${r.tieWordEmbeddings ? 'yes' : 'no'}`,
    `blocks        ${r.norm === 'rms' ? 'RMSNorm' : 'LayerNorm'}, ${r.activation}, ${r.positions === 'rope' ? `RoPE${ropeDetail(r)}` : 'learned positions'}` +
      (r.slidingWindow ? `, sliding window ${r.slidingWindow.size} on ${r.slidingWindow.layers.length === r.layers ? 'every layer' : `layers ${ranges(r.slidingWindow.layers)}`}` +
        (r.slidingWindow.size >= r.maxPositions ? ' (no effect: not shorter than max positions)' : '') : ''),
    `parameters    ${fmt(r.parameters.total)} total; per layer ${uniform && per.length ? fmt(per[0]!) : per.map(fmt).join(' ')}; outside layers ${fmt(r.parameters.nonLayer)}`,
    `dtypes        ${dtypeLine(r.dtypes)}`,
    `files         ${r.files.join(', ')}${r.tokenizer ? `   tokenizer ${r.tokenizer}` : '   (no tokenizer.json)'}`,
    `tensors       ${r.tensors}${r.ignored.length ? ` (${r.ignored.length} ignored by transformers)` : ''}`,
  ];
  if (r.valid) lines.push('check         ok: every tensor the architecture needs is present with the right shape');
  else lines.push(`check         FAILED: ${r.missing.length} missing, ${r.wrongShape.length} wrong shape, ${r.unexpected.length} unexpected`);
  return lines.join('\n') + '\n';
}

function fileText(r: FileReport): string {
  const width = Math.min(60, Math.max(4, ...r.tensors.map((t) => t.name.length)));
  const rows = r.tensors.map((t) => `  ${t.name.padEnd(width)}  ${t.dtype.padEnd(4)}  [${t.shape.join(', ')}]`);
  const meta = Object.keys(r.metadata).length ? `metadata    ${JSON.stringify(r.metadata)}\n` : '';
  return `file        ${r.path}\n` + `tensors     ${r.tensors.length}\n` + `parameters  ${fmt(r.parameters.total)}\n` +
    `dtypes      ${dtypeLine(r.dtypes)}\n` + meta + rows.join('\n') + (rows.length ? '\n' : '');
}

/** `streamline inspect <model-dir | file.safetensors> [--json]`. */
export function registerInspect(program: Command): void {
  program
    .command('inspect')
    .description('Describe a model directory or a .safetensors file and check that every tensor is present with the right shape')
    .argument('<path>', 'a Hugging Face model directory or a .safetensors file')
    .option('--json', 'print the report as JSON')
    .action((target: string, opts: { json?: boolean }) => {
      const r = inspect(target);
      process.stdout.write(opts.json ? JSON.stringify(r, null, 2) + '\n' : r.kind === 'model' ? modelText(r) : fileText(r));
      if (r.kind === 'model') assertModelValid(r);
    });
}
