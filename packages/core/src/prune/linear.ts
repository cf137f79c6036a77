/**
 * The training-free `linear` replacement (ReplaceMe-style). With Y the residual stream after layer s−1's
 * attention block and M its MLP output (h[s] = Y + M), solve min_T Σ_t ‖M_t·T − (h[s+n]_t − Y_t)‖² (+ ridge)
 * over all training tokens and fold T into layer s−1's MLP output projection: W' = Tᵀ·W, b' = Tᵀ·b.
 * When s = 0, M is the token embedding (Y the rest of h[0], e.g. OPT's positions) and T folds into untied input
 * embeddings: E' = E·T. Normal equations accumulate in f64; Eigen's LDLT solves them.
 */
import { fromNative, StreamlineError } from '../errors.js';
import { native } from '../native.js';
import { makeTokenBatch } from '../engine/batch.js';
import type { ModelDescription } from '../engine/description.js';
import { embed, runLayer, runLayers } from '../engine/forward.js';
import { f32View, type InMemoryReplacement } from './pruned-model.js';

export interface LinearFitOptions {
  blocks: readonly Int32Array[];
  /** Ridge term λ added to the Gram matrix's diagonal, relative to its mean diagonal. Default 1e-6. */
  ridge?: number;
  onProgress?: (done: number, total: number) => void;
  signal?: AbortSignal;
}

export interface LinearFit {
  /** T [D, D] row-major. */
  T: Float32Array;
  /** The replacement for prunedDescription (folded weights as f32 views). */
  inMemory: InMemoryReplacement;
  /** Folded tensors by role: 'down.weight'/'down.bias' of layer start−1, or 'embed.weight'. */
  folded: Record<string, { values: Float32Array; shape: number[] }>;
  tokens: number;
}

export async function fitLinear(desc: ModelDescription, start: number, end: number, o: LinearFitOptions): Promise<LinearFit> {
  const L = desc.layers.length, D = desc.semantics.hidden;
  if (!(0 <= start && start < end && end <= L)) throw new StreamlineError('E_RANGE', `window [${start}, ${end}) is not inside [0, ${L})`);
  if (!desc.semantics.preNorm && start > 0)
    throw new StreamlineError('E_REPLACEMENT', 'the linear replacement needs pre-norm layers (h[s] = Y + M); this model uses post-norm layers');
  const g = desc.global();
  if (start === 0) {
    if (!g['lm_head.weight']) throw new StreamlineError('E_REPLACEMENT', 'the window starts at layer 0 and the input embeddings are tied to the LM head: folding T into them would change the head; choose a window that starts later');
    if (g['project_in.weight']) throw new StreamlineError('E_REPLACEMENT', 'the window starts at layer 0 and the model projects its embeddings (project_in); folding is not supported there');
  } else {
    const w = desc.layers[start - 1]!.weights();
    if (desc.layers[start - 1]!.kind !== 'decoder' || !w['down.weight']) throw new StreamlineError('E_REPLACEMENT', `layer ${start - 1} has no MLP output projection to fold into`);
    // T would act on post_mlp_norm(M), but folded into down.weight it acts before that norm: a different function.
    if (w['post_mlp_norm.weight']) throw new StreamlineError('E_REPLACEMENT', `layer ${start - 1} norms its MLP output (post_mlp_norm, e.g. Gemma's post_feedforward_layernorm): the linear map cannot be folded into its down projection; use the mlp or layer replacement`);
  }
  const n = native();
  const XtX = new Float64Array(D * D), XtY = new Float64Array(D * D);
  let tokens = 0;
  const total = o.blocks.length;
  for (let b = 0; b < total; b++) {
    if (o.signal?.aborted) throw new StreamlineError('E_ABORTED', 'linear fit aborted');
    const batch = makeTokenBatch([o.blocks[b]!]);
    const M = batch.B * batch.T;
    let h = await embed(desc, batch);
    let X: Float32Array, Y: Float32Array;
    if (start === 0) {
      // M part = token embeddings alone; Y = h[0] − M (positions for OPT, zero otherwise).
      X = new Float32Array(M * D);
      n.embeddingForward(X, batch.ids, g['embed.weight']!);
      Y = new Float32Array(M * D);
      for (let i = 0; i < Y.length; i++) Y[i] = h.data[i]! - X[i]!;
    } else {
      h = await runLayers(desc, h, 0, start - 1, { signal: o.signal });
      const attnResidual = new Float32Array(M * D), mlpOut = new Float32Array(M * D);
      h = await runLayer(desc, desc.layers[start - 1]!, h, { attnResidual, mlpOut });
      X = mlpOut;
      Y = attnResidual;
    }
    h = await runLayers(desc, h, start, end, { signal: o.signal });
    const target = new Float32Array(M * D);
    for (let i = 0; i < target.length; i++) target[i] = h.data[i]! - Y[i]!;
    await n.normalEquationsAccumulate(XtX, XtY, X, target, batch.mask, M, D, D);
    tokens += batch.lengths[0]!;
    o.onProgress?.(b + 1, total);
  }
  let trace = 0;
  for (let i = 0; i < D; i++) trace += XtX[i * D + i]!;
  const ridge = (o.ridge ?? 1e-6) * (trace / D);
  const T = new Float32Array(D * D);
  try {
    await n.solveNormalEquations(T, XtX, XtY, D, D, ridge);
  } catch (e) {
    // The addon's rejection is a plain Error carrying the code; without re-typing it the CLI saw an unexpected exception.
    throw fromNative(e, `linear replacement for [${start}, ${end}) from ${tokens} tokens (hidden size ${D}), ridge ${ridge}`);
  }

  const folded: LinearFit['folded'] = {};
  if (start === 0) {
    const E = g['embed.weight']!;
    const V = E.shape[0]!;
    const values = new Float32Array(V * D);
    await n.foldRight(values, E, T, V, D);
    folded['embed.weight'] = { values, shape: [V, D] };
  } else {
    const w = desc.layers[start - 1]!.weights();
    const W = w['down.weight']!;
    const F = W.shape[1]!;
    const values = new Float32Array(D * F);
    await n.foldLeft(values, T, W, D, F);
    folded['down.weight'] = { values, shape: [D, F] };
    if (w['down.bias']) {
      const bias = new Float32Array(D);
      await n.foldLeft(bias, T, w['down.bias'], D, 1);
      folded['down.bias'] = { values: bias, shape: [D] };
    }
  }
  const views = Object.fromEntries(Object.entries(folded).map(([k, v]) => [k, f32View(v.values, v.shape)]));
  const inMemory: InMemoryReplacement = start === 0 ? { kind: 'linear', globalOverrides: views } : { kind: 'linear', layerOverrides: views };
  return { T, inMemory, folded, tokens };
}
