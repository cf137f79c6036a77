/** Builds an ArchAdapter from a family's ArchSpec: naming, expected tensors, parameter counts. */
import type { ModelConfig } from '../config.js';
import { GLOBAL_ROLES, LAYER_ROLES, type ArchAdapter, type ArchSpec, type ExpectedTensor, type GlobalRole, type LayerRole, type NamingOptions, type RoleShapes } from './types.js';

function spell(template: string, naming?: NamingOptions): string {
  return naming?.stripModelPrefix && template.startsWith('model.') ? template.slice('model.'.length) : template;
}

/** The shape of a fused tensor: its parts' rows stacked (their other dimensions agree by construction). */
export function fusedShape(parts: readonly LayerRole[], shapes: RoleShapes<LayerRole>): number[] {
  const first = shapes[parts[0]!]!;
  return [parts.reduce((n, r) => n + shapes[r]![0]!, 0), ...first.slice(1)];
}

export function defineAdapter(spec: ArchSpec): ArchAdapter {
  const groups = new Map<LayerRole, readonly LayerRole[]>();
  for (const parts of spec.fusedLayerRoles ?? []) {
    const names = new Set(parts.map((r) => spec.layerNames[r]));
    // A family file that names the parts differently would make the stacking silently wrong: fail at load.
    if (parts.length < 2 || names.size !== 1 || names.has(undefined)) throw new Error(`${spec.modelType}: fused roles ${parts.join(', ')} must share one layer tensor name`);
    for (const r of parts) groups.set(r, parts);
  }
  const adapter: ArchAdapter = {
    ...spec,
    layerTensorName(role: LayerRole, layer: number, naming?: NamingOptions) {
      const t = spec.layerNames[role];
      return t === undefined ? undefined : spell(t.replace('{i}', String(layer)), naming);
    },
    globalTensorName(role: GlobalRole, naming?: NamingOptions) {
      const t = spec.globalNames[role];
      return t === undefined ? undefined : spell(t, naming);
    },
    fusedGroup(role: LayerRole) {
      return groups.get(role);
    },
    expectedTensors(config: ModelConfig, naming?: NamingOptions): ExpectedTensor[] {
      const out: ExpectedTensor[] = [];
      const g = spec.globalShapes(config);
      const tied = spec.traits(config).tiedEmbeddings;
      for (const role of GLOBAL_ROLES) {
        const shape = g[role], name = adapter.globalTensorName(role, naming);
        if (shape && name) out.push({ name, role, layer: null, shape, required: !(role === 'lm_head.weight' && tied) });
      }
      const l = spec.layerShapes(config);
      for (let i = 0; i < config.numLayers; i++) {
        for (const role of LAYER_ROLES) {
          const shape = l[role], name = adapter.layerTensorName(role, i, naming);
          if (!shape || !name) continue;
          const parts = groups.get(role);
          if (!parts) out.push({ name, role, layer: i, shape, required: true });
          else if (parts[0] === role) out.push({ name, role, layer: i, shape: fusedShape(parts, l), required: true, parts });
        }
      }
      return out;
    },
    layerParamCount(config: ModelConfig): number {
      let n = 0;
      for (const shape of Object.values(spec.layerShapes(config))) n += shape!.reduce((a, b) => a * b, 1);
      return n;
    },
    detectNaming(names: Iterable<string>): NamingOptions {
      let prefixed = false, bare = false;
      for (const n of names) {
        if (n.startsWith('model.')) prefixed = true;
        else if (n.startsWith('layers.') || n.startsWith('decoder.') || n.startsWith('embed_tokens.') || n.startsWith('norm.')) bare = true;
      }
      return bare && !prefixed ? { stripModelPrefix: true } : {};
    },
    isIgnoredTensor(name: string): boolean {
      return spec.ignoredTensors.some((r) => r.test(name));
    },
  };
  return Object.freeze(adapter);
}
