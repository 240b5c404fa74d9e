#!/usr/bin/python3
"""Times PyTorch training steps of the model in an eva checkpoint: the baseline of native/bench_train.cpp.

The model is tests/torch_model.py's (DeepSeek-V3 semantics, the per-expert loop of the official code),
in float32 with autograd and torch.optim.AdamW (β 0.9/0.95, weight decay 0.1 on matrices), gradient
clipping at 1.0 and the auxiliary-loss-free bias rule: the same work as one step of `eva train`.
Prints one JSON object: the median seconds per step over --steps timed steps after 2 warm-up steps.
Set OMP_NUM_THREADS / OPENBLAS_NUM_THREADS / OMP_WAIT_POLICY in the environment (bench_train.cpp does).
Usage: /usr/bin/python3 native/bench_train.py MODEL.safetensors --batch 16 --seq-len 128 --steps 10 --threads 1
"""
import argparse
import json
import os
import statistics
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from torch_model import forward, read_safetensors  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    p, meta = read_safetensors(a.model, np.float32)
    c = json.loads(meta["config"])
    gamma = json.loads(meta["moe"])["gamma"]
    trainable = [v for v in p.values() if v.requires_grad]
    opt = torch.optim.AdamW([{"params": [v for v in trainable if v.dim() == 2], "weight_decay": 0.1},
                             {"params": [v for v in trainable if v.dim() != 2], "weight_decay": 0.0}],
                            lr=1e-3, betas=(0.9, 0.95), eps=1e-8)
    times = []
    for step in range(a.steps + 2):
        tokens = torch.randint(0, c["vocab_size"], (a.batch * a.seq_len + 1,))
        t0 = time.perf_counter()
        opt.zero_grad()
        logits, _, chosen = forward(c, p, tokens[:-1], a.batch, a.seq_len)
        loss = torch.nn.functional.cross_entropy(logits, tokens[1:])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        opt.step()
        with torch.no_grad():
            for name, idx in chosen:
                if name in p:
                    counts = torch.bincount(idx.reshape(-1), minlength=p[name].numel()).float()
                    p[name] += gamma * torch.sign(counts.mean() - counts)
        if step >= 2:
            times.append(time.perf_counter() - t0)
    print(json.dumps({"median_seconds": statistics.median(times), "threads": a.threads, "torch": torch.__version__,
                      "batch": a.batch, "seq_len": a.seq_len}))


if __name__ == "__main__":
    main()
