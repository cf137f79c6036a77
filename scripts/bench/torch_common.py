"""Shared helpers for the PyTorch side of `pnpm bench` (scripts/bench/torch_*.py). Dev tooling, run by hand or by
scripts/bench.mjs; CI never runs it. Each benchmark prints progress on stderr and exactly one JSON line on stdout
(the last line)."""
import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'fixtures'))

# Llama-3.2-1B decoder layer shapes
D, I, H, KV, HD = 2048, 8192, 32, 8, 64
ROPE_THETA, RMS_EPS = 500000.0, 1e-5


def parse_args(description, **extra):
    p = argparse.ArgumentParser(description=description)
    p.add_argument('--threads', type=int, default=2, help='torch.set_num_threads (default 2)')
    p.add_argument('--repeats', type=int, default=3, help='timed repetitions after one warm-up (default 3)')
    for name, (typ, default, help_) in extra.items():
        p.add_argument(f'--{name}', type=typ, default=default, help=help_)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    return args


def log(msg):
    print(msg, file=sys.stderr, flush=True)


SLOW_S = 60.0


def best_of(fn, repeats, label):
    """One warm-up call, then `repeats` timed calls; returns the fastest time in seconds. When the warm-up alone
    takes over SLOW_S seconds (PyTorch 1.13's bf16 matmul without AVX-512 falls back to a scalar loop), warm-up
    effects are negligible and that single run is the measurement."""
    t0 = time.perf_counter()
    fn()
    warm = time.perf_counter() - t0
    log(f'  {label}: warm-up {warm:.2f}s')
    if warm > SLOW_S:
        log(f'  {label}: slow (> {SLOW_S:.0f}s), using the single run')
        return warm
    times = []
    for r in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        log(f'  {label}: run {r + 1}/{repeats} {times[-1]:.2f}s')
    return min(times)


def emit(obj):
    obj.setdefault('torch', torch.__version__)
    obj.setdefault('threads', torch.get_num_threads())
    print(json.dumps(obj), flush=True)
