"""PyTorch side of `pnpm bench forward`: one Llama-3.2-1B-shaped decoder layer forward on 1 x 2048 tokens.

Hidden 2048, intermediate 8192, 32 heads, 8 KV heads, head_dim 64, causal mask, RoPE (llama3 scaling as in
Llama-3.2-1B), HF eager semantics (hf_reference.py ops: RMSNorm and softmax in f32). The module is cast to bf16
as a user would run a bf16 checkpoint (`model.to(torch.bfloat16)`); f32 is measured too for reference.
FLOPs counted: the seven projections (2 * 60.8 M per token) plus both attention matmuls over the full T x T
(eager attention computes the masked half too). Prints one JSON line:
  {"bench": "forward-layer", "tokens", "tokensPerSec" (bf16), "seconds", "gflops", "f32": {...}, "threads", "torch"}
"""
import torch

from torch_common import D, HD, H, I, KV, RMS_EPS, ROPE_THETA, best_of, emit, log, parse_args
import hf_reference as ref

CFG = {'hidden_size': D, 'num_attention_heads': H, 'head_dim': HD, 'rope_theta': ROPE_THETA,
       'max_position_embeddings': 131072,
       'rope_scaling': {'factor': 32.0, 'high_freq_factor': 4.0, 'low_freq_factor': 1.0,
                        'original_max_position_embeddings': 8192, 'rope_type': 'llama3'}}


class DecoderLayer(torch.nn.Module):
    def __init__(self):
        super().__init__()
        lin = lambda i, o: torch.nn.Linear(i, o, bias=False)  # noqa: E731
        self.q_proj, self.k_proj, self.v_proj, self.o_proj = lin(D, H * HD), lin(D, KV * HD), lin(D, KV * HD), lin(H * HD, D)
        self.gate_proj, self.up_proj, self.down_proj = lin(D, I), lin(D, I), lin(I, D)
        self.input_layernorm = torch.nn.Parameter(torch.ones(D))
        self.post_attention_layernorm = torch.nn.Parameter(torch.ones(D))

    def forward(self, h, cos, sin, mask):
        B, T, _ = h.shape
        x = ref.rms_norm(h, self.input_layernorm, RMS_EPS)
        q = ref.apply_rope(ref.split_heads(self.q_proj(x), H, HD), cos, sin)
        k = ref.apply_rope(ref.split_heads(self.k_proj(x), KV, HD), cos, sin)
        v = ref.split_heads(self.v_proj(x), KV, HD)
        h = h + self.o_proj(ref.merge_heads(ref.attention(q, k, v, mask, HD ** -0.5)))
        x = ref.rms_norm(h, self.post_attention_layernorm, RMS_EPS)
        return h + self.down_proj(torch.nn.functional.silu(self.gate_proj(x)) * self.up_proj(x))


def flops_per_token(T):
    proj = 2 * (D * H * HD + 2 * D * KV * HD + H * HD * D + 3 * D * I)
    attn = 2 * 2 * T * H * HD
    return proj + attn


def measure(dtype, tokens, repeats):
    torch.manual_seed(0)
    layer = DecoderLayer().to(dtype).eval()
    with torch.no_grad():
        for p in layer.parameters():
            if p.dim() == 2:
                p.normal_(0, p.shape[1] ** -0.5)
    h = torch.randn(1, tokens, D).to(dtype)
    pos = torch.arange(tokens)[None]
    cos, sin = ref.rope_cos_sin(CFG, pos, dtype)
    mask = ref.additive_mask(torch.ones(1, tokens, dtype=torch.uint8), dtype)
    with torch.no_grad():
        sec = best_of(lambda: layer(h, cos, sin, mask), repeats, str(dtype))
    return {'seconds': sec, 'tokensPerSec': tokens / sec, 'gflops': flops_per_token(tokens) * tokens / sec / 1e9}


def main():
    args = parse_args(__doc__.splitlines()[0], tokens=(int, 2048, 'sequence length (default 2048)'))
    log(f'torch_layer: {args.tokens} tokens, {args.threads} threads')
    bf16 = measure(torch.bfloat16, args.tokens, args.repeats)
    f32 = measure(torch.float32, args.tokens, args.repeats)
    emit({'bench': 'forward-layer', 'impl': 'pytorch', 'dtype': 'bf16', 'tokens': args.tokens, **bf16, 'f32': f32})


if __name__ == '__main__':
    main()
