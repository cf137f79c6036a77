#!/usr/bin/env python3
"""Side-by-side table of streamline_cuda_check's JSON figures and the PyTorch baselines' (torch_gpu_layer.py,
torch_gpu_train_step.py) for scripts/gpu-check.sh. Usage: compare_gpu.py CUDA_JSON [TORCH_JSON ...] [--markdown]
(the PyTorch files' rows are searched in order)."""
import datetime
import json
import sys


def find(rows, prefix, unit=None):
    for r in rows:
        if r["name"].startswith(prefix) and (unit is None or r["unit"] == unit):
            return r
    return None


def main():
    files = [a for a in sys.argv[1:] if not a.startswith("--")]
    cuda = json.load(open(files[0]))
    baselines = [json.load(open(f)) for f in files[1:]] or [{"bench": []}]
    torch = baselines[0]
    md = "--markdown" in sys.argv
    ours, theirs = cuda.get("bench", []), [r for b in baselines for r in b.get("bench", [])]
    pairs = [
        ("d2d copy (read+write)", "d2d copy", "d2d copy"),
        ("bf16 GEMM rate", "bf16 GEMM", "bf16 GEMM"),
        ("8B layer fwd tokens/s", "llama-3.1-8B layer fwd 8x", "llama-3.1-8B layer fwd 8x"),
        ("8B layer fwd TFLOP/s", "llama-3.1-8B layer fwd rate", "llama-3.1-8B layer fwd rate"),
        ("attention TFLOP/s", "  attention", "  attention"),
        ("cosine f32 vs T x T trace", "fused cosine f32", "cosine f32 T x T trace"),
        ("cosine f32 vs row-wise torch", "fused cosine f32", "cosine f32 F.cosine_similarity"),
        ("cosine bf16 vs row-wise torch", "fused cosine bf16", "cosine bf16 F.cosine_similarity"),
        ("peak GPU memory", "peak GPU memory", "peak GPU memory"),
        ("8B layer train step tokens/s", "8B layer train step ", "8B layer train step ", "tok/s"),
        ("8B layer train step TFLOP/s", "8B layer train step rate", "8B layer train step rate"),
        ("8B layer train step memory", "8B layer train step peak", "8B layer train step peak"),
        ("8B mlp train step tokens/s", "8B mlp train step ", "8B mlp train step ", "tok/s"),
        ("8B mlp train step TFLOP/s", "8B mlp train step rate", "8B mlp train step rate"),
        ("8B mlp train step memory", "8B mlp train step peak", "8B mlp train step peak"),
        ("8B layer lm step tokens/s", "8B layer lm step (", "8B layer lm step (", "tok/s"),
        ("8B layer lm step TFLOP/s", "8B layer lm step rate", "8B layer lm step rate"),
        ("8B layer lm step memory", "8B layer lm step peak", "8B layer lm step peak"),
    ]
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    head = f"GPU check {when}: {cuda.get('device', '?')}; torch {torch.get('torch', '?')}; cuBLASLt {cuda.get('cublaslt', '?')}"
    head += f"; checks {cuda.get('passed', 0)} passed, {cuda.get('failed', 0)} failed"
    print(head if not md else f"### {head}\n")
    line = "| {:<32} | {:>12} | {:>12} | {:<8} | {:>7} |" if md else "{:<32} {:>12} {:>12} {:<8} {:>7}"
    print(line.format("figure", "streamline", "pytorch", "unit", "ratio"))
    if md:
        print("|---|---:|---:|---|---:|")
    for label, a, b, *unit in pairs:
        ra, rb = find(ours, a, *unit), find(theirs, b, *unit)
        va = ra["value"] if ra else float("nan")
        vb = rb["value"] if rb else float("nan")
        unit = (ra or rb or {"unit": ""})["unit"]
        ratio = va / vb if ra and rb and vb else float("nan")
        print(line.format(label, f"{va:.3f}", f"{vb:.3f}", unit, f"{ratio:.2f}x"))
    gemm = find(ours, "bf16 GEMM")
    copy = find(ours, "d2d copy")
    layer = find(ours, "llama-3.1-8B layer fwd rate")
    cos = find(ours, "fused cosine f32")
    if gemm and layer and gemm["value"]:
        print(f"\nlayer at {100 * layer['value'] / gemm['value']:.0f}% of the measured GEMM rate (aim >= 60%)")
    if copy and cos and copy["value"]:
        print(f"fused cosine at {100 * cos['value'] / copy['value']:.0f}% of copy bandwidth (aim >= 80%)")
    lt, lp = find(ours, "llama-3.1-8B layer fwd 8x"), find(theirs, "llama-3.1-8B layer fwd 8x")
    if lt and lp and lp["value"]:
        print(f"layer speed-up over PyTorch eager: {lt['value'] / lp['value']:.2f}x (aim >= 1.5x)")
    ab = find(ours, "attention backward bf16 tc")
    if ab:
        print(f"attention backward at the 8B step shape, bf16 tensor cores: {ab['value']:.2f} ms, {ab.get('note', '')}")
    for kind in ("layer", "mlp"):
        st, sp = find(ours, f"8B {kind} train step ", "tok/s"), find(theirs, f"8B {kind} train step ", "tok/s")
        if st and sp and sp["value"]:
            print(f"{kind} training step vs PyTorch autocast + AdamW: {st['value'] / sp['value']:.2f}x")
    # Feeding the step from the host (prefetch): the f32 pipeline and the bf16 cache's against train_step's upload
    # + step; the bf16 one should come down to about the step alone (cuda/NOTES.md).
    fed = [(what, find(ours, prefix)) for what, prefix in (
        ("upload + step", "8B layer micro-batch from host, train_step"),
        ("f32 staged", "8B layer micro-batch from host, stage+step_staged"),
        ("bf16 staged", "8B layer micro-batch from a bf16 cache"))]
    if any(r for _, r in fed):
        print("8B layer micro-batch fed from the host: " + ", ".join(f"{w} {r['value']:.1f} ms" for w, r in fed if r))


if __name__ == "__main__":
    main()
