/**
 * A pruned model in memory: the source description with the window [start, end) removed and, for `mlp` and
 * `layer`, the replacement in its place. For `linear`, the folded weights override the source's tensors.
 * The engine runs it like any other model, which is how the exported checkpoint is checked against it.
 */
import { StreamlineError } from '../errors.js';
import type { GlobalRole, LayerRole, LayerSource, ModelDescription, WeightView } from '../engine/description.js';

/** f32 values as a weight view of the given shape. */
export function f32View(values: Float32Array, shape: readonly number[]): WeightView {
  return { data: new Uint8Array(values.buffer, values.byteOffset, values.byteLength), dtype: 'f32', shape };
}

export type InMemoryReplacement =
  | { kind: 'none' }
  /** Folded weights: layer start−1's `down.weight`/`down.bias`, or the global `embed.weight` when start = 0. */
  | { kind: 'linear'; layerOverrides?: Partial<Record<LayerRole, WeightView>>; globalOverrides?: Partial<Record<GlobalRole, WeightView>> }
  | { kind: 'mlp' | 'layer'; weights: Partial<Record<LayerRole, WeightView>> };

export function prunedDescription(desc: ModelDescription, start: number, end: number, r: InMemoryReplacement): ModelDescription {
  const L = desc.layers.length;
  if (!(Number.isInteger(start) && Number.isInteger(end) && 0 <= start && start < end && end <= L))
    throw new StreamlineError('E_RANGE', `window [${start}, ${end}) is not inside [0, ${L})`);
  const layers: LayerSource[] = [];
  for (let i = 0; i < L; i++) {
    if (i === start && (r.kind === 'mlp' || r.kind === 'layer')) {
      const w = r.weights;
      // a layer replacement sits where layer `start` was and keeps its attention type (config-edit.ts keeps its
      // layer_types entry), so its sliding window and its RoPE too
      const first = r.kind === 'layer' ? desc.layers[start]! : undefined;
      layers.push({
        kind: r.kind === 'mlp' ? 'mlp' : 'decoder', weights: () => w, label: `${r.kind} replacement of [${start}, ${end})`,
        ...(first?.window ? { window: first.window } : {}),
        ...(first?.rope ? { rope: first.rope } : {}),
      });
    }
    if (i >= start && i < end) continue;
    const src = desc.layers[i]!;
    if (r.kind === 'linear' && i === start - 1 && r.layerOverrides) {
      const o = r.layerOverrides;
      layers.push({ ...src, weights: () => ({ ...src.weights(), ...o }), label: `${src.label} (linear fold)` });
    } else {
      layers.push(src);
    }
  }
  const global = r.kind === 'linear' && r.globalOverrides ? () => ({ ...desc.global(), ...r.globalOverrides }) : desc.global;
  return { ...desc, layers, global };
}
