/**
 * ModelDir (config + adapter + memory-mapped checkpoint) → ModelDescription for the engine. Layer weights are
 * looked up lazily, so only the running layer's pages are touched.
 */
import { LAYER_ROLES, GLOBAL_ROLES, type GlobalRole, type LayerRole } from '../arch/types.js';
import type { DType } from '../dtype.js';
import type { ModelDir } from '../model-dir.js';
import { Tensor } from '../tensor.js';
import type { LayerSource, ModelDescription, WeightView } from './description.js';
import type { RopeConfig } from '../config.js';
import { StreamlineError } from '../errors.js';
import type { RopeParams } from './rope.js';

/**
 * The embedding scale as the family applies it: transformers casts it to the embedding weight's dtype first (Gemma 3:
 * sqrt(1152) = 33.94 is 34.0 in bf16), the dtype such a model is trained and normally run in.
 */
function storedScale(md: ModelDir, scale: number): number {
  const name = md.globalTensorName('embed.weight');
  const dtype = (name && md.checkpoint.has(name) ? md.checkpoint.info(name).dtype : 'f32') as DType;
  return Tensor.fromFloat32([scale], [1], dtype).toFloat32()[0]!;
}

export function describeModel(md: ModelDir): ModelDescription {
  const c = md.config;
  const t = md.adapter.traits(c);
  const ropeOf = (r: RopeConfig): RopeParams => {
    const s = r.scaling;
    return {
      theta: r.theta,
      dim: r.rotaryDim,
      maxPositionEmbeddings: c.maxPositionEmbeddings,
      scaling: s.type === 'default' ? null
        : s.type === 'longrope' || s.type === 'yarn' ? { ...s }
        : s.type === 'linear' ? { type: 'linear', factor: s.factor }
        : s.type === 'dynamic' ? { type: 'dynamic', factor: s.factor, ...(s.originalMaxPositionEmbeddings !== undefined ? { originalMaxPositionEmbeddings: s.originalMaxPositionEmbeddings } : {}) }
        : { type: 'llama3', factor: s.factor, lowFreqFactor: s.lowFreqFactor, highFreqFactor: s.highFreqFactor, originalMaxPositionEmbeddings: s.originalMaxPositionEmbeddings },
    };
  };
  const rope = c.rope ? ropeOf(c.rope) : null;
  // One object per layer type: the CUDA engine and the lm tail tell ropes apart by identity.
  const ropeByType: Partial<Record<string, RopeParams>> = {};
  for (const [type, r] of Object.entries(c.ropeByLayerType ?? {})) {
    if (!r) continue;
    // The engine has one rotary dim per model (LayerSemantics.rotaryDim, the CUDA context's rot_dim).
    if (!c.rope || r.rotaryDim !== c.rope.rotaryDim)
      throw new StreamlineError('E_CONFIG_UNSUPPORTED', `${c.modelType}: the RoPE of ${type} layers rotates ${r.rotaryDim} dims per head, the model's ${c.rope ? c.rope.rotaryDim : 'none (learned positions)'}; per-layer RoPE must keep the model's rotary dim`);
    ropeByType[type] = ropeOf(r);
  }
  const layers: LayerSource[] = [];
  for (let i = 0; i < c.numLayers; i++) {
    // HF masks key j for query i when i − j ≥ sliding_window, on the layers its layer_types mark as sliding
    const window = c.slidingWindow !== null && c.layerTypes[i] === 'sliding_attention' ? c.slidingWindow : 0;
    layers.push({
      kind: 'decoder',
      label: `layer ${i}`,
      ...(window > 0 ? { window } : {}),
      ...(ropeByType[c.layerTypes[i]!] ? { rope: ropeByType[c.layerTypes[i]!]! } : {}),
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
      attnScale: c.attentionScale ?? 1 / Math.sqrt(c.headDim),
      ...(c.rope && c.rope.rotaryDim < c.headDim ? { rotaryDim: c.rope.rotaryDim } : {}),
      ...(t.qkNorm ? { qkNorm: true } : {}),
      ...(t.postNorms ? { postNorms: true } : {}),
    },
    rope,
    ...(c.embedScale !== undefined ? { embedScale: storedScale(md, c.embedScale) } : {}),
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
