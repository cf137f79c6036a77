/**
 * Target sparsity → window length. Removing n layers and adding a replacement R removes
 * n·(params per layer) − params(R); we pick the n whose net removal comes closest to F × total parameters
 * (ties: the smaller n). Parameters counted as stored: every tensor's element count.
 */
import type { LayerRole } from '../arch/types.js';
import { StreamlineError } from '../errors.js';
import type { ModelDir } from '../model-dir.js';
import type { ModelReport } from '../inspect.js';

export type ReplacementKind = 'none' | 'linear' | 'mlp' | 'layer';

export interface ParamBudget {
  /** All parameters of the model (embeddings and head included). */
  total: number;
  /** Parameters of each decoder layer (index = layer). */
  perLayer: number[];
  /** Parameters of the MLP block plus its norms (post_mlp_norm too, Gemma), per layer (what an `mlp` replacement adds). */
  mlpPerLayer: number[];
}

/** Parameters the replacement adds for a window starting at `start`. */
export function replacementParams(b: ParamBudget, kind: ReplacementKind, start: number): number {
  if (kind === 'layer') return b.perLayer[start] ?? b.perLayer[0]!;
  if (kind === 'mlp') return b.mlpPerLayer[start] ?? b.mlpPerLayer[0]!;
  return 0; // none; linear folds into existing weights
}

/** Net parameters removed by the window [start, start+n) with the given replacement. */
export function removedParams(b: ParamBudget, kind: ReplacementKind, start: number, n: number): number {
  let r = 0;
  for (let k = start; k < start + n; k++) r += b.perLayer[k]!;
  return r - replacementParams(b, kind, start);
}

/**
 * The window length whose net removal is closest to `sparsity` × total (layers assumed uniform; the mean
 * layer size is used, since the window's position is not known before scoring).
 * @throws StreamlineError E_OPTION when sparsity is not in (0, 1) or no window length removes anything.
 */
export function nForSparsity(b: ParamBudget, kind: ReplacementKind, sparsity: number): number {
  if (!(sparsity > 0 && sparsity < 1)) throw new StreamlineError('E_INVALID_OPTION', `--sparsity must be in (0, 1), got ${sparsity}`);
  const L = b.perLayer.length;
  const meanLayer = b.perLayer.reduce((a, x) => a + x, 0) / L;
  const meanMlp = b.mlpPerLayer.reduce((a, x) => a + x, 0) / L;
  const repl = kind === 'layer' ? meanLayer : kind === 'mlp' ? meanMlp : 0;
  const target = sparsity * b.total;
  let best = -1, bestDiff = Infinity;
  for (let n = 1; n <= L - 1; n++) {
    const net = n * meanLayer - repl;
    if (net <= 0) continue;
    const diff = Math.abs(net - target);
    if (diff < bestDiff) { best = n; bestDiff = diff; }
  }
  if (best < 0) {
    throw new StreamlineError('E_INVALID_OPTION', `no window length removes parameters with the '${kind}' replacement: the model has ${L} layers and a window leaves at least one${kind === 'none' ? '' : `, while the replacement adds back about ${Math.round(repl)} parameters`}; give --n (or --range), or another --replacement`);
  }
  return best;
}

const MLP_ROLES: LayerRole[] = ['mlp_norm.weight', 'mlp_norm.bias', 'gate.weight', 'gate.bias', 'up.weight', 'up.bias', 'down.weight', 'down.bias', 'post_mlp_norm.weight'];

/** Parameter budget of a model from its inspect() report and checkpoint. */
export function paramBudget(report: ModelReport, md: ModelDir): ParamBudget {
  const mlpPerLayer = report.parameters.perLayer.map((_, i) => {
    // A set: fused roles (Phi-3 gate_up_proj) name one tensor that must count once.
    const names = new Set(MLP_ROLES.map((role) => md.layerTensorName(role, i)));
    let n = 0;
    for (const name of names) if (name && md.checkpoint.has(name)) n += md.checkpoint.info(name).shape.reduce((a, b) => a * b, 1);
    return n;
  });
  return { total: report.parameters.total, perLayer: report.parameters.perLayer, mlpPerLayer };
}
