#!/usr/bin/python3
"""PyTorch reference for the whole eva model, in the spirit of llm.c's test_gpt2.

Reads DIR/model.safetensors (written by eva: official tensor names, ModelArgs and MoE settings in
__metadata__) and DIR/batches.json (token batches and optimizer settings). Builds the same model in
float64 torch following DeepSeek-V3's inference/model.py (MLA from torch_mla.py; Gate/MoE/MLP here),
computes the logits, the loss and every gradient of batch 0 with autograd, then runs AdamW steps
(torch.optim.AdamW, gradient clipping, the auxiliary-loss-free bias rule) over all batches.
With n_mtp_layers > 0 in the config, DeepSeek-V3's multi-token-prediction modules are built here too
(technical report §2.2): module k at position i projects [enorm(embed(t[i+k])); hnorm(h[k-1][i])]
with eh_proj, runs one block, and predicts t[i+k+1] through shared_head.norm and the shared head;
the loss gains (mtp_lambda / D) * sum_k CE_k.
Writes DIR/torch.json: logits, loss, {name: gradient}, and every step's loss and chosen experts
(and with MTP: each module's logits and cross-entropy).
Usage: /usr/bin/python3 tests/torch_model.py DIR
"""
import json
import os
import struct
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_mla import mla, rms_norm  # noqa: E402


def read_safetensors(path, dtype=np.float64):
    data = open(path, "rb").read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {})
    out = {}
    for name, e in header.items():
        assert e["dtype"] == "F32", name
        b, t = e["data_offsets"]
        a = np.frombuffer(data[8 + n + b:8 + n + t], dtype="<f4").reshape(e["shape"])
        out[name] = torch.tensor(a.astype(dtype), requires_grad=not name.endswith("gate.bias"))
    return out, meta


def swiglu(x, p, prefix):
    return (torch.nn.functional.silu(x @ p[prefix + "w1.weight"].T) * (x @ p[prefix + "w3.weight"].T)) @ p[prefix + "w2.weight"].T


def moe(c, p, pre, x):
    """DeepSeekMoE (Gate + experts + shared experts) for x [n, dim]; returns y and the chosen experts."""
    E, K, G, L = c["n_routed_experts"], c["n_activated_experts"], c["n_expert_groups"], c["n_limited_groups"]
    n = x.shape[0]
    logits = x @ p[pre + "gate.weight"].T
    scores = logits.softmax(-1) if c["score_func"] == "softmax" else logits.sigmoid()
    bias = p.get(pre + "gate.bias")
    sel = scores.detach() + (bias if bias is not None else 0)  # the bias only chooses
    if G > 1:
        g = sel.view(n, G, E // G)
        gs = g.topk(2, -1).values.sum(-1) if bias is not None else g.amax(-1)
        mask = torch.ones(n, G, dtype=torch.bool).scatter(1, gs.topk(L, -1).indices, False)
        sel = g.masked_fill(mask.unsqueeze(-1), float("-inf")).view(n, E)
    idx = sel.topk(K, -1).indices
    w = scores.gather(1, idx)
    if c["score_func"] == "sigmoid":
        w = w / w.sum(-1, keepdim=True)
    w = w * c["route_scale"]
    y = swiglu(x, p, pre + "shared_experts.") if c["n_shared_experts"] else torch.zeros_like(x)
    for e in range(E):
        tok, slot = (idx == e).nonzero(as_tuple=True)
        if len(tok):
            y = y.index_add(0, tok, w[tok, slot, None] * swiglu(x[tok], p, f"{pre}experts.{e}."))
    return y, idx


def block(c, p, i, x, B, T, chosen):
    """Transformer block `layers.{i}.` on x [B*T, dim]: dense FFN below n_dense_layers, MoE above."""
    pre = f"layers.{i}."
    W = {k[len(pre + "attn."):-len(".weight")]: v for k, v in p.items()
         if k.startswith(pre + "attn.") and k.endswith(".weight")}
    h = x + mla(c, W, rms_norm(x, p[pre + "attn_norm.weight"]), B, T)
    hn = rms_norm(h, p[pre + "ffn_norm.weight"])
    if i < c["n_dense_layers"]:
        return h + swiglu(hn, p, pre + "ffn.")
    f, idx = moe(c, p, pre + "ffn.", hn)
    chosen.append((pre + "ffn.gate.bias", idx))
    return h + f


def forward(c, p, tokens, B, T):
    """Logits [B*T, vocab], the MTP modules' logits (module k: [B*(T-k), vocab]) and the chosen experts."""
    x = p["embed.weight"][tokens]
    chosen = []
    for i in range(c["n_layers"]):
        x = block(c, p, i, x, B, T, chosen)
    logits = rms_norm(x, p["norm.weight"]) @ p["head.weight"].T
    mtp_logits = []
    h = x.view(B, T, -1)  # h^0: the last block's output, before the final norm
    for k in range(1, c.get("n_mtp_layers", 0) + 1):
        i, n = c["n_layers"] + k - 1, T - k
        if n <= 0:
            break
        pre = f"layers.{i}."
        e = p["embed.weight"][tokens.view(B, T)[:, k:]]  # embedding of t[i+k] for positions i < T-k
        z = torch.cat([rms_norm(e, p[pre + "enorm.weight"]), rms_norm(h[:, :n], p[pre + "hnorm.weight"])], -1)
        out = block(c, p, i, (z @ p[pre + "eh_proj.weight"].T).reshape(B * n, -1), B, n, chosen)
        mtp_logits.append(rms_norm(out, p[pre + "shared_head.norm.weight"]) @ p["head.weight"].T)
        h = out.view(B, n, -1)
    return logits, mtp_logits, chosen


def total_loss(c, job, logits, mtp_logits, targets, B, T):
    """Main cross-entropy + (lambda / D) * sum_k CE_k; also each CE_k."""
    loss = torch.nn.functional.cross_entropy(logits, targets)
    ces = [torch.nn.functional.cross_entropy(z, targets.view(B, T)[:, k + 1:].reshape(-1))
           for k, z in enumerate(mtp_logits)]
    if ces:
        loss = loss + job["mtp_lambda"] / c["n_mtp_layers"] * sum(ces)
    return loss, ces


def main(d):
    torch.set_num_threads(1)
    p, meta = read_safetensors(f"{d}/model.safetensors")
    c = json.loads(meta["config"])
    gamma = json.loads(meta["moe"])["gamma"]
    job = json.load(open(f"{d}/batches.json"))
    B, T = job["batch"], job["seq_len"]
    batches = [(torch.tensor(i), torch.tensor(t)) for i, t in zip(job["inputs"], job["targets"])]

    logits, mtp_logits, _ = forward(c, p, batches[0][0], B, T)
    loss, ces = total_loss(c, job, logits, mtp_logits, batches[0][1], B, T)
    loss.backward()
    out = {"logits": logits.detach().reshape(-1).tolist(), "loss": loss.item(),
           "mtp_logits": [z.detach().reshape(-1).tolist() for z in mtp_logits],
           "mtp_cross_entropy": [ce.item() for ce in ces],
           "grads": {k: v.grad.reshape(-1).tolist() for k, v in p.items() if v.requires_grad}}

    trainable = [v for v in p.values() if v.requires_grad]
    for v in trainable:
        v.grad = None
    decay = [v for v in trainable if v.dim() == 2]
    no_decay = [v for v in trainable if v.dim() != 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": job["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=job["lr"], betas=(job["beta1"], job["beta2"]), eps=job["eps"])
    losses, routing = [], []
    for inputs, targets in batches:
        opt.zero_grad()
        logits, mtp_logits, chosen = forward(c, p, inputs, B, T)
        loss, _ = total_loss(c, job, logits, mtp_logits, targets, B, T)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, job["grad_clip"])
        opt.step()
        with torch.no_grad():  # auxiliary-loss-free balancing: b_i += γ·sign(mean load − load_i)
            for name, idx in chosen:
                if name in p:
                    counts = torch.bincount(idx.reshape(-1), minlength=p[name].numel()).double()
                    p[name] += gamma * torch.sign(counts.mean() - counts)
        losses.append(loss.item())
        routing.append([idx.sort(-1).values.reshape(-1).tolist() for _, idx in chosen])
    out["step_losses"] = losses
    out["step_routing"] = routing
    json.dump(out, open(f"{d}/torch.json", "w"))


if __name__ == "__main__":
    main(sys.argv[1])
