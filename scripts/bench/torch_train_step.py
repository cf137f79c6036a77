"""PyTorch side of `pnpm bench train`: one optimiser step of a Llama-3.2-1B-shaped replacement on 1 x 2048 tokens.

`mlp` replacement: y = x + MLP(RMSNorm(x)) (SwiGLU, hidden 2048, intermediate 8192); `layer` replacement: one
full decoder layer (32 heads, 8 KV heads, causal, RoPE). A step = forward under bf16 autocast (f32 master
weights), MSE loss against a target, backward, gradient clipping to norm 5, AdamW (lr 2e-4, weight decay 1e-3).
The same steps in plain f32 (no autocast) are measured for reference.
Prints one JSON line: {"bench": "train-step", "tokens", "mlp": {"seconds", "tokensPerSec"},
  "layer": {"seconds", "tokensPerSec"}, "f32": {"mlp": {...}, "layer": {...}}, "threads", "torch"}
"""
import torch

from torch_common import D, I, RMS_EPS, best_of, emit, log, parse_args
from torch_layer import CFG, DecoderLayer
import hf_reference as ref


class MlpReplacement(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.gate_proj = torch.nn.Linear(D, I, bias=False)
        self.up_proj = torch.nn.Linear(D, I, bias=False)
        self.down_proj = torch.nn.Linear(I, D, bias=False)
        self.post_attention_layernorm = torch.nn.Parameter(torch.ones(D))

    def forward(self, h, *unused):
        x = ref.rms_norm(h, self.post_attention_layernorm, RMS_EPS)
        return h + self.down_proj(torch.nn.functional.silu(self.gate_proj(x)) * self.up_proj(x))


def measure(module, tokens, repeats, label, autocast=True):
    torch.manual_seed(0)
    with torch.no_grad():
        for p in module.parameters():
            if p.dim() == 2:
                p.normal_(0, p.shape[1] ** -0.5)
    x = torch.randn(1, tokens, D)
    target = x + 0.1 * torch.randn(1, tokens, D)
    cos, sin = ref.rope_cos_sin(CFG, torch.arange(tokens)[None], torch.float32)
    mask = ref.additive_mask(torch.ones(1, tokens, dtype=torch.uint8), torch.float32)
    opt = torch.optim.AdamW(module.parameters(), lr=2e-4, weight_decay=1e-3)

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast('cpu', dtype=torch.bfloat16, enabled=autocast):
            y = module(x, cos, sin, mask)
        loss = (y.float() - target).pow(2).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), 5.0)
        opt.step()

    sec = best_of(step, repeats, label)
    return {'seconds': sec, 'tokensPerSec': tokens / sec}


def main():
    args = parse_args(__doc__.splitlines()[0], tokens=(int, 2048, 'sequence length (default 2048)'))
    log(f'torch_train_step: {args.tokens} tokens, {args.threads} threads')
    mlp = measure(MlpReplacement(), args.tokens, args.repeats, 'mlp bf16 autocast')
    layer = measure(DecoderLayer(), args.tokens, args.repeats, 'layer bf16 autocast')
    f32 = {'mlp': measure(MlpReplacement(), args.tokens, args.repeats, 'mlp f32', autocast=False),
           'layer': measure(DecoderLayer(), args.tokens, args.repeats, 'layer f32', autocast=False)}
    emit({'bench': 'train-step', 'impl': 'pytorch', 'autocast': 'bf16', 'tokens': args.tokens, 'mlp': mlp,
          'layer': layer, 'f32': f32})


if __name__ == '__main__':
    main()
