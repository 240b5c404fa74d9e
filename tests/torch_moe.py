"""PyTorch cross-check of eva's DeepSeekMoE layer (run by tests/test_moe.cpp with /usr/bin/python3).

Reads the layer's parameters, input x, output gradient dy and config from IN.json (written by eva), computes
in float64 with torch autograd

    scores = softmax or sigmoid of x @ gate.T; selection with the bias (group-limited when n_expert_groups > 1,
    group score = top-2 sum with bias, max without), weights = original scores of the chosen experts
    (sigmoid: renormalized), times route_scale; y = sum_k w_k expert_k(x) + shared(x), SwiGLU experts;
    loss = sum(dy * y) + sequence-wise balance loss alpha * mean_seq sum_i f_i P_i (f constant)

and writes y, the chosen indices, the balance loss and every gradient to OUT.json.
"""
import json
import sys

import torch


def swiglu(x, w1, w2, w3):
    return torch.nn.functional.silu(x @ w1.T) * (x @ w3.T) @ w2.T


def main(in_path, out_path):
    d = json.load(open(in_path))
    c = d["config"]
    D, F, E, K = c["dim"], c["moe_inter_dim"], c["n_routed_experts"], c["n_activated_experts"]
    G, L = c["n_expert_groups"], c["n_limited_groups"]
    n = len(d["x"]) // D
    t = lambda v, *shape: torch.tensor(v, dtype=torch.float64).reshape(*shape).requires_grad_(True)
    x, dy = t(d["x"], n, D), torch.tensor(d["dy"], dtype=torch.float64).reshape(n, D)
    gate = t(d["gate"], E, D)
    bias = torch.tensor(d["bias"], dtype=torch.float64) if d["bias"] else None
    experts = [[t(w1, F, D), t(w2, D, F), t(w3, F, D)] for w1, w2, w3 in d["experts"]]
    Fs = F * c["n_shared_experts"]
    shared = [t(d["shared"][0], Fs, D), t(d["shared"][1], D, Fs), t(d["shared"][2], Fs, D)]

    logits = x @ gate.T
    scores = logits.softmax(dim=-1) if c["score_func"] == "softmax" else logits.sigmoid()
    sel = scores.detach() + (bias if bias is not None else 0)
    if G > 1:
        grouped = sel.view(n, G, E // G)
        gscore = grouped.topk(2, dim=-1).values.sum(-1) if bias is not None else grouped.amax(-1)
        keep = gscore.topk(L, dim=-1).indices
        mask = torch.ones(n, G, dtype=torch.bool).scatter(1, keep, False)
        sel = grouped.masked_fill(mask.unsqueeze(-1), float("-inf")).reshape(n, E)
    idx = sel.topk(K, dim=-1).indices
    w = scores.gather(1, idx)
    if c["score_func"] == "sigmoid":
        w = w / w.sum(-1, keepdim=True)
    w = w * c["route_scale"]

    y = swiglu(x, *shared)
    for e in range(E):
        tok, slot = (idx == e).nonzero(as_tuple=True)
        if len(tok):
            y = y.index_add(0, tok, w[tok, slot].unsqueeze(1) * swiglu(x[tok], *experts[e]))

    # Complementary sequence-wise balance loss over sequences of seq_len tokens.
    T = d["seq_len"]
    s_norm = scores / scores.sum(-1, keepdim=True)
    counts = torch.zeros(n, E, dtype=torch.float64).scatter(1, idx, 1.0)
    f = counts.view(n // T, T, E).sum(1) * E / (K * T)
    P = s_norm.view(n // T, T, E).mean(1)
    bal = c["alpha"] * (f * P).sum(-1).mean() if c["balance"] in ("seq-loss",) else torch.zeros((), dtype=torch.float64)

    loss = (dy * y).sum() + bal
    loss.backward()
    flat = lambda g: g.reshape(-1).tolist()
    json.dump({"y": flat(y.detach()), "indices": flat(idx), "balance_loss": bal.item(), "dx": flat(x.grad),
               "dgate": flat(gate.grad), "dshared": [flat(p.grad) for p in shared],
               "dexperts": [[flat(p.grad) if p.grad is not None else [0.0] * p.numel() for p in ex]
                            for ex in experts]},
              open(out_path, "w"))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
