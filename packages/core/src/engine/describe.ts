/**
 * ModelDir (config + adapter + memory-mapped checkpoint) → ModelDescription for the engine. Layer weights are
 * looked up lazily, so only the running layer's pages are touched.
 */
import { LAYER_ROLES, GLOBAL_ROLES, type GlobalRole, type LayerRole } from '../arch/types.js';
import type { ModelDir } from '../model-dir.js';
import type { LayerSource, ModelDescription, WeightView } from './description.js';
import type { RopeParams } from './rope.js';

export function describeModel(md: ModelDir): ModelDescription {
  const c = md.config;
  const t = md.adapter.traits(c);
  let rope: RopeParams | null = null;
  if (c.rope) {
    const s = c.rope.scaling;
    rope = {
      theta: c.rope.theta,
      dim: c.rope.rotaryDim,
      maxPositionEmbeddings: c.maxPositionEmbeddings,
      scaling: s.type === 'default' ? null
        : s.type === 'longrope' || s.type === 'yarn' ? { ...s }
        : s.type === 'linear' ? { type: 'linear', factor: s.factor }
        : s.type === 'dynamic' ? { type: 'dynamic', factor: s.factor, ...(s.originalMaxPositionEmbeddings !== undefined ? { originalMaxPositionEmbeddings: s.originalMaxPositionEmbeddings } : {}) }
        : { type: 'llama3', factor: s.factor, lowFreqFactor: s.lowFreqFactor, highFreqFactor: s.highFreqFactor, originalMaxPositionEmbeddings: s.originalMaxPositionEmbeddings },
    };
  }
  const layers: LayerSource[] = [];
  for (let i = 0; i < c.numLayers; i++) {
    // HF masks key j for query i when i − j ≥ sliding_window, on the layers its layer_types mark as sliding
    const window = c.slidingWindow !== null && c.layerTypes[i] === 'sliding_attention' ? c.slidingWindow : 0;
    layers.push({
      kind: 'decoder',
      label: `layer ${i}`,
      ...(window > 0 ? { window } : {}),
      weights: () => {
        const w: Partial<Record<LayerRole, WeightView>> = {};
        for (const role of LAYER_ROLES) {
          const tensor = md.layerTensor(role, i);
          if (tensor) w[role] = tensor;
        }
        return w;
      },
    });
  }
  return {
    modelType: c.modelType,
    vocab: c.vocabSize,
    semantics: {
      hidden: c.hiddenSize, heads: c.numHeads, kvHeads: c.numKvHeads, headDim: c.headDim, intermediate: c.intermediateSize,
      norm: t.norm, normEps: t.normEps, activation: t.activation, gatedMlp: t.gatedMlp, preNorm: t.preNorm,
      attnScale: 1 / Math.sqrt(c.headDim),
      ...(c.rope && c.rope.rotaryDim < c.headDim ? { rotaryDim: c.rope.rotaryDim } : {}),
      ...(t.qkNorm ? { qkNorm: true } : {}),
    },
    rope,
    learnedPositionOffset: t.positions === 'learned' ? t.positionOffset : null,
    finalNorm: t.finalNorm,
    projDim: t.projectInOut ? t.embedDim : null,
    maxPositionEmbeddings: c.maxPositionEmbeddings,
    layers,
    global: () => {
      const g: Partial<Record<GlobalRole, WeightView>> = {};
      for (const role of GLOBAL_ROLES) {
        const tensor = md.globalTensor(role);
        if (tensor) g[role] = tensor;
      }
      return g;
    },
  };
}
