"""PyTorch side of `pnpm bench score`: the official LLM-Streamline way to score one pair of boundaries.

Two [16384, 2048] f32 hidden-state tensors (h[s] and h[s+n] for 16,384 tokens). The official code normalises the
rows, multiplies them into a full T x T cosine matrix and takes the mean of its diagonal (its trace / T).
16384^2 f32 = 1 GiB fits in memory here, so it is done in one matmul (`--chunk N` splits the tokens into
blocks of N, as the official code effectively does per sample, when it would not fit). For reference it also
times PyTorch's row-wise `F.cosine_similarity(a, b, dim=-1).mean()` and a memory copy.
Copy bandwidth: `dst.copy_(src)` of a 512 MiB f32 tensor; GB/s = (bytes read + bytes written) / s.
Prints one JSON line: {"bench": "score", "tokens", "hidden", "seconds" (official), "score",
  "rowwiseSeconds", "copyGBps", "threads", "torch"}
"""
import torch

from torch_common import best_of, emit, log, parse_args


def official(a, b, chunk):
    total = 0.0
    for s in range(0, a.shape[0], chunk):
        an = a[s:s + chunk] / a[s:s + chunk].norm(dim=-1, keepdim=True)
        bn = b[s:s + chunk] / b[s:s + chunk].norm(dim=-1, keepdim=True)
        sim = an @ bn.t()  # chunk x chunk cosine matrix
        total += float(sim.trace())
        del sim
    return total / a.shape[0]


def main():
    args = parse_args(__doc__.splitlines()[0], tokens=(int, 16384, 'tokens (default 16384)'),
                      hidden=(int, 2048, 'hidden size (default 2048)'),
                      chunk=(int, 0, 'tokens per T x T block (default: all at once)'))
    torch.manual_seed(0)
    a = torch.randn(args.tokens, args.hidden)
    b = a + 0.5 * torch.randn(args.tokens, args.hidden)
    chunk = args.chunk or args.tokens
    log(f'torch_score: [{args.tokens}, {args.hidden}] x2, chunk {chunk}, {args.threads} threads')
    result = {}
    sec = best_of(lambda: result.__setitem__('score', official(a, b, chunk)), args.repeats, 'official T x T')
    rowwise = best_of(lambda: float(torch.nn.functional.cosine_similarity(a, b, dim=-1).mean()), args.repeats,
                      'row-wise cosine_similarity')
    src = torch.randn(128 * 1024 * 1024)  # 512 MiB
    dst = torch.empty_like(src)
    copy = best_of(lambda: dst.copy_(src), max(args.repeats, 5), 'copy 512 MiB')
    emit({'bench': 'score', 'impl': 'pytorch', 'tokens': args.tokens, 'hidden': args.hidden, 'chunk': chunk,
          'seconds': sec, 'score': result['score'], 'rowwiseSeconds': rowwise,
          'copyGBps': 2 * src.numel() * 4 / copy / 1e9})


if __name__ == '__main__':
    main()
