#!/usr/bin/python3
"""Times PyTorch greedy decoding of the model in an eva checkpoint: the baseline of native/bench_decode.cpp.

The model is tests/torch_model.py's (DeepSeek-V3 semantics: the Gate, the per-expert loop of the official
code), in float32 without autograd, batch 1, with the NAIVE cache that a plain implementation keeps:
every layer caches each head's full key (nope + rope) and value for every past token, as Hugging Face's
DeepSeek modeling does, instead of MLA's 576-wide latent. One token per step: embed, then per layer
project the new token's query/key/value, append its key and value, attend over the cache, FFN; argmax.
Prints one JSON object: the prompt's and every generated token (to compare with eva's greedy output)
and the median seconds per generated token over --rounds rounds.
Set OMP_NUM_THREADS / OPENBLAS_NUM_THREADS in the environment (bench_decode.cpp does).
Usage: /usr/bin/python3 native/bench_decode.py MODEL.safetensors --prompt 1,2,3 --new 64 --rounds 3
"""
import argparse
import json
import math
import os
import statistics
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from torch_mla import rms_norm, rope_freqs, rotate  # noqa: E402
from torch_model import moe, read_safetensors, swiglu  # noqa: E402


class Decoder:
    def __init__(self, c, p, capacity):
        self.c, self.p = c, p
        H, nope, rope, v = c["n_heads"], c["qk_nope_head_dim"], c["qk_rope_head_dim"], c["v_head_dim"]
        self.freqs = rope_freqs(c).float()
        self.scale = (nope + rope) ** -0.5
        if c["max_seq_len"] > c["original_seq_len"]:
            m = 0.1 * c["mscale"] * math.log(c["rope_factor"]) + 1.0
            self.scale *= m * m
        self.k = [torch.zeros(capacity, H, nope + rope) for _ in range(c["n_layers"])]
        self.v = [torch.zeros(capacity, H, v) for _ in range(c["n_layers"])]
        self.length = 0

    def attention(self, i, x, pos):
        c, p, pre = self.c, self.p, f"layers.{i}.attn."
        H, nope, rope, kvr = c["n_heads"], c["qk_nope_head_dim"], c["qk_rope_head_dim"], c["kv_lora_rank"]
        angles = (pos * self.freqs)[None, :]  # [1, rope/2]
        if c["q_lora_rank"] == 0:
            q = x @ p[pre + "wq.weight"].T
        else:
            q = rms_norm(x @ p[pre + "wq_a.weight"].T, p[pre + "q_norm.weight"]) @ p[pre + "wq_b.weight"].T
        q = q.view(1, H, nope + rope)
        q = torch.cat([q[..., :nope], rotate(q[..., nope:], angles)], -1)
        kv, k_pe = (x @ p[pre + "wkv_a.weight"].T).split([kvr, rope], -1)
        k_pe = rotate(k_pe.view(1, 1, rope), angles)
        kv = (rms_norm(kv, p[pre + "kv_norm.weight"]) @ p[pre + "wkv_b.weight"].T).view(1, H, -1)
        self.k[i][pos] = torch.cat([kv[..., :nope], k_pe.expand(1, H, rope)], -1)[0]
        self.v[i][pos] = kv[0, :, nope:]
        K, V = self.k[i][:pos + 1], self.v[i][:pos + 1]              # [t, H, d]
        s = torch.einsum("hd,thd->ht", q[0], K) * self.scale
        o = torch.einsum("ht,thd->hd", s.softmax(-1), V)
        return o.reshape(1, -1) @ p[pre + "wo.weight"].T

    def step(self, token):
        c, p, pos = self.c, self.p, self.length
        x = p["embed.weight"][token].view(1, -1)
        for i in range(c["n_layers"]):
            pre = f"layers.{i}."
            h = x + self.attention(i, rms_norm(x, p[pre + "attn_norm.weight"]), pos)
            hn = rms_norm(h, p[pre + "ffn_norm.weight"])
            x = h + (swiglu(hn, p, pre + "ffn.") if i < c["n_dense_layers"] else moe(c, p, pre + "ffn.", hn)[0])
        self.length += 1
        return int((rms_norm(x, p["norm.weight"]) @ p["head.weight"].T).argmax())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--prompt", required=True, help="comma-separated token ids")
    ap.add_argument("--new", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    p, meta = read_safetensors(a.model, np.float32)
    for v in p.values():
        v.requires_grad_(False)
    c = json.loads(meta["config"])
    prompt = [int(t) for t in a.prompt.split(",")]
    times, out = [], []
    with torch.no_grad():
        for _ in range(a.rounds):
            d = Decoder(c, p, len(prompt) + a.new)
            for t in prompt[:-1]:
                d.step(t)
            nxt, out = d.step(prompt[-1]), []
            t0 = time.perf_counter()
            for _ in range(a.new):  # the timed part: one generated token per step, as eva's plain loop
                out.append(nxt)
                nxt = d.step(nxt)
            times.append((time.perf_counter() - t0) / a.new)
    print(json.dumps({"tokens": out, "seconds_per_token": statistics.median(times)}))


if __name__ == "__main__":
    main()
