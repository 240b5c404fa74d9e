#!/usr/bin/python3
"""PyTorch reference for eva's MLA (tests/test_mla.cpp runs it).

Reads DIR/header.json (ModelArgs, batch, seq_len, tensor shapes) and DIR/<name>.bin (little-endian
float64) for the MLA weights, the input x and an upstream gradient dout; computes the forward exactly
as DeepSeek-V3's inference/model.py defines MLA (interleaved-pair RoPE as complex numbers, YaRN
frequencies and mscale, q_lora or not, causal softmax), then the gradients with autograd, all in float64.
Writes DIR/out.torch.bin, DIR/x.grad.bin and DIR/<weight>.grad.bin.
Usage: /usr/bin/python3 tests/torch_mla.py DIR
"""
import json
import math
import sys

import numpy as np
import torch


def load(d, name, shape):
    a = np.fromfile(f"{d}/{name}.bin", dtype="<f8").reshape(shape)
    return torch.tensor(a, dtype=torch.float64, requires_grad=True)


def rope_freqs(c):
    """Angular frequency of each rotary pair, with YaRN when max_seq_len > original_seq_len."""
    d = c["qk_rope_head_dim"]
    base = c["rope_theta"]
    freqs = 1.0 / base ** (torch.arange(0, d, 2, dtype=torch.float64) / d)
    if c["max_seq_len"] > c["original_seq_len"]:
        def corr(rot):
            return d * math.log(c["original_seq_len"] / (rot * 2 * math.pi)) / (2 * math.log(base))
        low = max(math.floor(corr(c["beta_fast"])), 0)
        high = min(math.ceil(corr(c["beta_slow"])), d - 1)
        if low == high:
            high += 0.001
        ramp = ((torch.arange(d // 2, dtype=torch.float64) - low) / (high - low)).clamp(0, 1)
        smooth = 1 - ramp
        freqs = freqs / c["rope_factor"] * (1 - smooth) + freqs * smooth
    return freqs


def rotate(x, angles):
    """x [..., T, heads, d]: pairs (x[2i], x[2i+1]) as complex numbers times e^{i·angle}."""
    z = torch.view_as_complex(x.reshape(*x.shape[:-1], -1, 2).contiguous())
    rot = torch.polar(torch.ones_like(angles), angles)  # [T, d/2]
    return torch.view_as_real(z * rot[:, None, :]).flatten(-2)


def rms_norm(x, w):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * w


def mla(c, W, x, B, T):
    H, nope, rope, v = c["n_heads"], c["qk_nope_head_dim"], c["qk_rope_head_dim"], c["v_head_dim"]
    kvr = c["kv_lora_rank"]
    x = x.view(B, T, -1)
    # Angles in float64, then the input's precision (float64 for the cross-check, float32 when benchmarking).
    angles = torch.outer(torch.arange(T, dtype=torch.float64), rope_freqs(c)).to(x.dtype)
    if c["q_lora_rank"] == 0:
        q = x @ W["wq"].T
    else:
        q = rms_norm(x @ W["wq_a"].T, W["q_norm"]) @ W["wq_b"].T
    q = q.view(B, T, H, nope + rope)
    q_nope, q_pe = q.split([nope, rope], dim=-1)
    q_pe = rotate(q_pe, angles)
    kv, k_pe = (x @ W["wkv_a"].T).split([kvr, rope], dim=-1)
    k_pe = rotate(k_pe.unsqueeze(2), angles)                      # one head, shared
    kv = (rms_norm(kv, W["kv_norm"]) @ W["wkv_b"].T).view(B, T, H, nope + v)
    k_nope, val = kv.split([nope, v], dim=-1)
    k = torch.cat([k_nope, k_pe.expand(-1, -1, H, -1)], dim=-1)
    qq = torch.cat([q_nope, q_pe], dim=-1)
    scale = (nope + rope) ** -0.5
    if c["max_seq_len"] > c["original_seq_len"]:
        m = 0.1 * c["mscale"] * math.log(c["rope_factor"]) + 1.0
        scale *= m * m
    scores = torch.einsum("bshd,bthd->bsht", qq, k) * scale
    mask = torch.full((T, T), float("-inf"), dtype=x.dtype).triu(1)
    scores = (scores + mask[None, :, None, :]).softmax(dim=-1)
    o = torch.einsum("bsht,bthd->bshd", scores, val)
    return (o.flatten(2) @ W["wo"].T).reshape(B * T, -1)


def main(d):
    torch.set_num_threads(1)
    h = json.load(open(f"{d}/header.json"))
    c, B, T = h["config"], h["batch"], h["seq_len"]
    tensors = {name: load(d, name, shape) for name, shape in h["tensors"].items()}
    x, dout = tensors.pop("x"), tensors.pop("dout")
    out = mla(c, tensors, x, B, T)
    (out * dout.detach()).sum().backward()
    out.detach().numpy().astype("<f8").tofile(f"{d}/out.torch.bin")
    x.grad.numpy().astype("<f8").tofile(f"{d}/x.grad.bin")
    for name, t in tensors.items():
        t.grad.numpy().astype("<f8").tofile(f"{d}/{name}.grad.bin")


if __name__ == "__main__":
    main(sys.argv[1])
