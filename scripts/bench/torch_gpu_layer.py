#!/usr/bin/env python3
"""PyTorch baselines for scripts/gpu-check.sh, on the same GPU in the same run (dev tool; needs torch with CUDA).

- one Llama-3.1-8B-shaped decoder layer forward in eager bf16 (hidden 4096, intermediate 14336, 32 heads,
  8 KV heads, head 128, 8 x 2048 tokens; RMSNorm in f32 as Hugging Face does, rotate-half RoPE, SDPA causal
  attention with GQA, SwiGLU): median time with CUDA events, tokens/s, TFLOP/s;
- ceilings: device-to-device copy bandwidth (bytes read + written) and an 8192^3 bf16 matmul;
- cosine scoring baselines on [8, 2048, 4096] boundary states: the official LLM-Streamline style T x T similarity
  matrix and its trace per sample, and the row-wise F.cosine_similarity.

Writes a JSON file (--json) with every figure; prints a short table.
"""
import argparse
import json
import math
import statistics

import torch
import torch.nn.functional as F


def time_ms(fn, warmup=3, reps=10):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a = torch.cuda.Event(enable_timing=True)
        b = torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times)


def rmsnorm(x, w, eps):
    xf = x.float()
    xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return w * xf.to(x.dtype)


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", default="torch_gpu_layer.json")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    dev = torch.device("cuda")
    torch.manual_seed(0)
    res = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__}
    out = []

    def rec(name, value, unit, note=""):
        out.append({"name": name, "value": value, "unit": unit, "note": note})
        print(f"  torch {name:<44} {value:12.3f} {unit:<8} {note}", flush=True)

    with torch.no_grad():
        # Ceilings.
        n = (1 if args.quick else 4) << 30
        a = torch.randint(0, 255, (n,), dtype=torch.uint8, device=dev)
        b = torch.empty_like(a)
        ms = time_ms(lambda: b.copy_(a))
        copy_tbs = 2 * n / (ms * 1e-3) / 1e12
        rec("d2d copy bandwidth (read+write)", copy_tbs, "TB/s", f"{ms:.3f} ms")
        del a, b
        g = 4096 if args.quick else 8192
        x = torch.randn(g, g, dtype=torch.bfloat16, device=dev)
        w = torch.randn(g, g, dtype=torch.bfloat16, device=dev)
        ms = time_ms(lambda: x @ w.T)
        gemm = 2 * g ** 3 / (ms * 1e-3) / 1e12
        rec(f"bf16 GEMM {g}^3", gemm, "TFLOP/s", f"{ms:.3f} ms")
        del x, w

        # Cosine scoring baselines on boundary states [B, T, D].
        B, T, D = 8, 2048, 4096
        pairs = [(torch.randn(B, T, D, device=dev), torch.randn(B, T, D, device=dev)) for _ in range(2)]
        k = [0]

        def tt_trace():
            ha, hb = pairs[k[0] % 2]
            k[0] += 1
            s = 0.0
            for i in range(B):  # official code: normalised rows, T x T matrix, its trace
                an = F.normalize(ha[i], dim=-1)
                bn = F.normalize(hb[i], dim=-1)
                s = s + torch.trace(an @ bn.T)
            return s

        def rowwise():
            ha, hb = pairs[k[0] % 2]
            k[0] += 1
            return F.cosine_similarity(ha, hb, dim=-1).sum()

        nbytes = 2 * B * T * D * 4
        ms = time_ms(tt_trace)
        rec("cosine f32 T x T trace (official style)", nbytes / (ms * 1e-3) / 1e12, "TB/s", f"{ms:.3f} ms")
        ms = time_ms(rowwise)
        rec("cosine f32 F.cosine_similarity rows", nbytes / (ms * 1e-3) / 1e12, "TB/s", f"{ms:.3f} ms")
        pb = [(x.bfloat16(), y.bfloat16()) for x, y in pairs]

        def rowwise_bf16():
            ha, hb = pb[k[0] % 2]
            k[0] += 1
            return F.cosine_similarity(ha, hb, dim=-1).float().sum()

        ms = time_ms(rowwise_bf16)
        rec("cosine bf16 F.cosine_similarity rows", nbytes / 2 / (ms * 1e-3) / 1e12, "TB/s", f"{ms:.3f} ms")
        del pairs, pb

        # Llama-3.1-8B-shaped layer.
        Bl = 2 if args.quick else 8
        D, Fd, H, Hk, Dh = 4096, 14336, 32, 8, 128
        M = Bl * T
        bf = torch.bfloat16
        s = 0.02
        wq = torch.randn(H * Dh, D, dtype=bf, device=dev) * s
        wk = torch.randn(Hk * Dh, D, dtype=bf, device=dev) * s
        wv = torch.randn(Hk * Dh, D, dtype=bf, device=dev) * s
        wo = torch.randn(D, H * Dh, dtype=bf, device=dev) * s
        wg = torch.randn(Fd, D, dtype=bf, device=dev) * s
        wu = torch.randn(Fd, D, dtype=bf, device=dev) * s
        wd = torch.randn(D, Fd, dtype=bf, device=dev) * s
        n1 = torch.ones(D, dtype=bf, device=dev)
        n2 = torch.ones(D, dtype=bf, device=dev)
        inv = 1.0 / (500000.0 ** (torch.arange(0, Dh, 2, device=dev).float() / Dh))
        pos = torch.arange(T, device=dev).float()
        fr = torch.outer(pos, inv)
        emb = torch.cat((fr, fr), dim=-1)
        cos, sin = emb.cos().to(bf)[None, None], emb.sin().to(bf)[None, None]
        x0 = torch.randn(Bl, T, D, dtype=bf, device=dev)

        def layer(x):
            h = rmsnorm(x, n1, 1e-5)
            q = (h @ wq.T).view(Bl, T, H, Dh).transpose(1, 2)
            kk = (h @ wk.T).view(Bl, T, Hk, Dh).transpose(1, 2)
            v = (h @ wv.T).view(Bl, T, Hk, Dh).transpose(1, 2)
            q = q * cos + rotate_half(q) * sin
            kk = kk * cos + rotate_half(kk) * sin
            o = F.scaled_dot_product_attention(q, kk, v, is_causal=True, enable_gqa=True)
            x = x + o.transpose(1, 2).reshape(Bl, T, H * Dh) @ wo.T
            h = rmsnorm(x, n2, 1e-5)
            return x + (F.silu(h @ wg.T) * (h @ wu.T)) @ wd.T

        ms = time_ms(lambda: layer(x0), warmup=2, reps=5 if args.quick else 7)
        gemm_fl = 2.0 * M * (D * (H * Dh + 2 * Hk * Dh) + H * Dh * D + D * 2 * Fd + Fd * D)
        attn_fl = 4.0 * Bl * H * Dh * (T * (T + 1) / 2)
        tfl = (gemm_fl + attn_fl) / (ms * 1e-3) / 1e12
        rec(f"llama-3.1-8B layer fwd {Bl}x{T} tokens", M / (ms * 1e-3), "tok/s", f"{ms:.3f} ms")
        rec("llama-3.1-8B layer fwd rate", tfl, "TFLOP/s", f"{100 * tfl / gemm:.0f}% of measured GEMM rate")
        q = torch.randn(Bl, H, T, Dh, dtype=bf, device=dev)
        kv = torch.randn(Bl, Hk, T, Dh, dtype=bf, device=dev)
        ms = time_ms(lambda: F.scaled_dot_product_attention(q, kv, kv, is_causal=True, enable_gqa=True))
        rec("  attention (SDPA, bf16)", attn_fl / (ms * 1e-3) / 1e12, "TFLOP/s", f"{ms:.3f} ms")
        rec("peak GPU memory (torch allocator)", torch.cuda.max_memory_allocated() / 2 ** 30, "GiB")

    res["bench"] = out
    with open(args.json, "w") as f:
        json.dump(res, f, indent=1)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
