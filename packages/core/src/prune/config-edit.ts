/**
 * config.json of a pruned model: the new `num_hidden_layers`, and every per-layer field kept consistent with
 * the layers that remain. Works on the raw JSON so fields we do not model survive untouched.
 */
import { getAdapter, SUPPORTED_MODEL_TYPES } from '../arch/index.js';

/**
 * Which source layer each layer of the pruned model comes from: the window [start, end) is replaced by the
 * replacement (which sits where layer `start` was and takes its per-layer settings) or removed.
 */
export function keptLayers(L: number, start: number, end: number, hasReplacementLayer: boolean): number[] {
  const kept: number[] = [];
  for (let i = 0; i < L; i++) {
    if (i < start || i >= end) kept.push(i);
    else if (i === start && hasReplacementLayer) kept.push(i);
  }
  return kept;
}

/**
 * Rewrites a raw config for the kept layers. Per-layer lists (any array whose length equals the old layer count,
 * e.g. `layer_types`, per-layer sliding windows) keep the entries of the kept layers; `max_window_layers`
 * (Qwen2: layers below it use full attention when sliding windows are on) becomes the number of kept layers
 * whose source index was below it, also when the source leaves it at its default (the pruned model's default would
 * mark other layers). Returns the new object (the input is not modified) and the fields changed.
 */
export function pruneConfig(raw: Record<string, unknown>, kept: number[]): { config: Record<string, unknown>; changed: string[] } {
  const L = Number(raw.num_hidden_layers);
  const config: Record<string, unknown> = structuredClone(raw);
  const changed: string[] = ['num_hidden_layers'];
  config.num_hidden_layers = kept.length;
  const modelType = raw.model_type;
  const adapter = typeof modelType === 'string' && SUPPORTED_MODEL_TYPES.includes(modelType) ? getAdapter(modelType) : undefined;
  // Lists the source leaves to a rule over layer indices are written out first, then filtered like the others.
  const lists: Record<string, unknown> = { ...raw };
  if (adapter?.derivedLayerLists)
    for (const [key, value] of Object.entries(adapter.derivedLayerLists(adapter.parseConfig({ json: raw, file: 'config.json' }))))
      if (!Array.isArray(raw[key])) lists[key] = value;
  for (const [key, value] of Object.entries(lists)) {
    if (key === 'num_hidden_layers') continue;
    if (Array.isArray(value) && value.length === L && L > 0) {
      config[key] = kept.map((i) => value[i]);
      changed.push(key);
    }
  }
  // Keys whose value is a layer index count the kept layers below it; one left at the family's default is spelled out
  // (the pruned model's default would point at other layers).
  const defaults = adapter?.layerIndexDefaults ?? {};
  for (const key of new Set(['max_window_layers', ...Object.keys(defaults)])) {
    const given = raw[key];
    const m = typeof given === 'number' ? given : defaults[key];
    if (m === undefined) continue;
    config[key] = kept.filter((i) => i < m).length;
    changed.push(key);
  }
  return { config, changed };
}
