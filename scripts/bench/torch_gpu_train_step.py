#!/usr/bin/env python3
"""PyTorch baseline of one replacement training step for scripts/gpu-check.sh (dev tool; needs torch with CUDA).

The same work as streamline_cuda_check's bench_train, on the same GPU in the same run: one optimiser step of a
Llama-3.1-8B-shaped replacement (hidden 4096, intermediate 14336, 32 heads, 8 KV heads, head 128, 8 x 2048 tokens):
- `layer`: pre-norm decoder layer (RMSNorm in f32 as Hugging Face does, rotate-half RoPE, SDPA causal GQA, SwiGLU);
- `mlp`: x + MLP(RMSNorm(x));
- `lm` (bench_lm): the `layer` replacement trained through frozen layers and the LM head with cross-entropy.
f32 master parameters, forward and backward under torch.autocast(bfloat16), MSE against a target hidden state,
clip_grad_norm_(5), AdamW (fused when this torch has it; lr 2e-4, weight decay 1e-3). Inputs stay on the GPU.
Median time of whole steps with CUDA events; tokens/s and model TFLOP/s with the FLOP count of bench.cpp (forward
GEMMs x 3, causal attention x 3.5).

Writes a JSON file (--json) in the contract of torch_gpu_layer.py ({"device", "torch", "bench": [{name, value,
unit, note}]}); prints a short table.
"""
import argparse
import json
import statistics

import torch
import torch.nn.functional as F


def time_ms(fn, warmup=2, reps=5):
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


def attention_block(x, w, shape, cos, sin):
    """x + o(attention(rope(q), rope(k), v)) of a pre-norm Llama layer; shape = (B, T, H, Hk, Dh)."""
    B, T, H, Hk, Dh = shape
    h = rmsnorm(x, w["n1"], 1e-5)
    q = F.linear(h, w["wq"]).view(B, T, H, Dh).transpose(1, 2)
    k = F.linear(h, w["wk"]).view(B, T, Hk, Dh).transpose(1, 2)
    v = F.linear(h, w["wv"]).view(B, T, Hk, Dh).transpose(1, 2)
    q = q * cos + rotate_half(q) * sin
    k = k * cos + rotate_half(k) * sin
    o = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    return x + F.linear(o.transpose(1, 2).reshape(B, T, H * Dh), w["wo"])


def mlp_block(x, w):
    """x + down(silu(gate(n)) * up(n)), n = RMSNorm(x): the `mlp` replacement and a layer's second half."""
    h = rmsnorm(x, w["n2"], 1e-5)
    return x + F.linear(F.silu(F.linear(h, w["wg"])) * F.linear(h, w["wu"]), w["wd"])


def make_adamw(params):
    try:
        return torch.optim.AdamW(params, lr=2e-4, weight_decay=1e-3, fused=True), "fused"
    except (TypeError, RuntimeError):
        return torch.optim.AdamW(params, lr=2e-4, weight_decay=1e-3), "foreach"


def optimiser_step(loss, params, opt):
    """backward, clip_grad_norm_(5), AdamW, gradients dropped: the rest of one step after the loss."""
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 5.0)
    opt.step()
    opt.zero_grad(set_to_none=True)
    return loss


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", default="torch_gpu_train_step.json")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    dev = torch.device("cuda")
    torch.manual_seed(0)
    res = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__}
    out = []

    def rec(name, value, unit, note=""):
        out.append({"name": name, "value": value, "unit": unit, "note": note})
        print(f"  torch {name:<44} {value:12.3f} {unit:<8} {note}", flush=True)

    B = 2 if args.quick else 8
    T, D, Fd, H, Hk, Dh = 2048, 4096, 14336, 32, 8, 128
    M = B * T
    bf = torch.bfloat16
    inv = 1.0 / (500000.0 ** (torch.arange(0, Dh, 2, device=dev).float() / Dh))
    fr = torch.outer(torch.arange(T, device=dev).float(), inv)
    emb = torch.cat((fr, fr), dim=-1)
    cos, sin = emb.cos().to(bf)[None, None], emb.sin().to(bf)[None, None]

    for kind in ("layer", "mlp"):
        def param(*shape, scale=0.02, offset=0.0):
            return torch.nn.Parameter(torch.randn(*shape, device=dev) * scale + offset)

        p = {"n2": param(D, scale=0.1, offset=1.0), "wg": param(Fd, D), "wu": param(Fd, D), "wd": param(D, Fd)}
        if kind == "layer":
            p.update(n1=param(D, scale=0.1, offset=1.0), wq=param(H * Dh, D), wk=param(Hk * Dh, D),
                     wv=param(Hk * Dh, D), wo=param(D, H * Dh))
        params = list(p.values())
        opt, opt_kind = make_adamw(params)
        x0 = torch.randn(B, T, D, device=dev)
        target = torch.randn(B, T, D, device=dev)

        def forward(x):
            if kind == "layer":
                x = attention_block(x, p, (B, T, H, Hk, Dh), cos, sin)
            return mlp_block(x, p)

        def step():
            with torch.autocast("cuda", dtype=bf):
                y = forward(x0)
            return optimiser_step(F.mse_loss(y.float(), target), params, opt)

        torch.cuda.reset_peak_memory_stats()
        ms = time_ms(step, warmup=2, reps=3 if args.quick else 5)
        loss = float(step())
        gemm_fwd = 2.0 * M * 3 * Fd * D
        attn_fwd = 0.0
        if kind == "layer":
            gemm_fwd += 2.0 * M * (D * (H * Dh + 2 * Hk * Dh) + H * Dh * D)
            attn_fwd = 4.0 * B * H * Dh * (T * (T + 1) / 2)
        flops = 3.0 * gemm_fwd + 3.5 * attn_fwd
        rec(f"8B {kind} train step {B}x{T} tokens", M / (ms * 1e-3), "tok/s",
            f"{ms:.3f} ms; autocast bf16, AdamW {opt_kind}, clip 5; loss {loss:.4g}")
        rec(f"8B {kind} train step rate", flops / (ms * 1e-3) / 1e12, "TFLOP/s", f"{flops / 1e12:.2f} model TFLOP per step")
        rec(f"8B {kind} train step peak GPU memory", torch.cuda.max_memory_allocated() / 2 ** 30, "GiB", "torch allocator")
        del p, params, opt, x0, target
        torch.cuda.empty_cache()

    # The lm objective (bench.cpp bench_lm): a trainable layer, then FROZEN frozen layers (bf16 weights, no gradient,
    # autograd keeps their activations as eager PyTorch does) and the Llama-3 head (final RMSNorm, 128256-token bf16
    # lm_head), mean next-token cross-entropy over full logits.
    frozen, V = (1 if args.quick else 2), 128256

    def lparam(*shape, scale=0.02, offset=0.0, grad=True):
        t = torch.randn(*shape, device=dev) * scale + offset
        return torch.nn.Parameter(t) if grad else t.to(bf)

    def layer_weights(grad):
        return {"n1": lparam(D, scale=0.1, offset=1.0, grad=grad), "wq": lparam(H * Dh, D, grad=grad),
                "wk": lparam(Hk * Dh, D, grad=grad), "wv": lparam(Hk * Dh, D, grad=grad),
                "wo": lparam(D, H * Dh, grad=grad), "n2": lparam(D, scale=0.1, offset=1.0, grad=grad),
                "wg": lparam(Fd, D, grad=grad), "wu": lparam(Fd, D, grad=grad), "wd": lparam(D, Fd, grad=grad)}

    def layer(x, w):
        return mlp_block(attention_block(x, w, (B, T, H, Hk, Dh), cos, sin), w)

    p = layer_weights(True)
    tail = [layer_weights(False) for _ in range(frozen)]
    fnorm = torch.ones(D, device=dev)
    head = (torch.randn(V, D, device=dev) * 0.02).to(bf)
    params = list(p.values())
    opt, opt_kind = make_adamw(params)
    x0 = torch.randn(B, T, D, device=dev)
    tokens = torch.randint(0, V, (B, T), device=dev)
    targets = torch.cat((tokens[:, 1:], torch.full((B, 1), -100, device=dev)), dim=1)

    def lm_step():
        with torch.autocast("cuda", dtype=bf):
            y = layer(x0, p)
            for w in tail:
                y = layer(y, w)
            logits = F.linear(rmsnorm(y, fnorm, 1e-5), head)
        return optimiser_step(F.cross_entropy(logits.float().view(M, V), targets.view(M), ignore_index=-100), params, opt)

    torch.cuda.reset_peak_memory_stats()
    try:
        ms = time_ms(lm_step, warmup=1, reps=3)
        loss = float(lm_step())
        layer_gemm = 2.0 * M * (D * (H * Dh + 2 * Hk * Dh) + H * Dh * D + 3.0 * Fd * D)
        attn = 4.0 * B * H * Dh * (T * (T + 1) / 2)
        flops = 3.0 * layer_gemm + 3.5 * attn + (3.0 * frozen - 1) * layer_gemm + (4.5 * frozen - 1) * attn + 4.0 * M * V * D
        rec(f"8B layer lm step ({frozen} frozen layers + 128k head) {B}x{T} tokens", M / (ms * 1e-3), "tok/s",
            f"{ms:.3f} ms; autocast bf16, full logits, AdamW {opt_kind}, clip 5; loss {loss:.4g}; inputs on the GPU")
        rec("8B layer lm step rate", flops / (ms * 1e-3) / 1e12, "TFLOP/s", "the FLOP count of bench.cpp")
        rec("8B layer lm step peak GPU memory", torch.cuda.max_memory_allocated() / 2 ** 30, "GiB", "torch allocator")
    except torch.cuda.OutOfMemoryError as e:
        rec("8B layer lm step", 0.0, "tok/s", f"out of memory: {e}".splitlines()[0][:120])

    res["bench"] = out
    with open(args.json, "w") as f:
        json.dump(res, f, indent=1)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
