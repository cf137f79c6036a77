/** Builds an ArchAdapter from a family's ArchSpec: naming, expected tensors, parameter counts. */
import type { ModelConfig } from '../config.js';
import { GLOBAL_ROLES, LAYER_ROLES, type ArchAdapter, type ArchSpec, type ExpectedTensor, type GlobalRole, type LayerRole, type NamingOptions } from './types.js';

function spell(template: string, naming?: NamingOptions): string {
  return naming?.stripModelPrefix && template.startsWith('model.') ? template.slice('model.'.length) : template;
}

export function defineAdapter(spec: ArchSpec): ArchAdapter {
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
          if (shape && name) out.push({ name, role, layer: i, shape, required: true });
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
