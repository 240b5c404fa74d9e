#!/usr/bin/python3
"""Tiny DeepSeek checkpoints in Hugging Face's layout, written without eva (PyTorch + NumPy).

For each model (a V2-Lite-like one: softmax, greedy routing, no query compression; a V3-like one:
sigmoid, noaux_tc with groups and e_score_correction_bias, q_lora_rank, one MTP module), YaRN on in both,
this writes Hugging Face folders the way the releases are laid out — config.json with Hugging Face's
fields, Hugging Face tensor names, one file or shards with model.safetensors.index.json, stored as F32,
F16, BF16 or FP8 (F8_E4M3 / F8_E5M2 Linear weights with float32 weight_scale_inv per 128×128 block,
partial edge blocks: dim 160 = 128 + 32) — and beside each folder DIR a file DIR.ref.safetensors in
eva's own layout (official inference names, float32, ModelArgs in __metadata__) holding exactly the
float32 weights the folder stands for: the BF16/F16 roundings and the FP8 dequantization
float32(code) · scale_inv computed here, independently of eva (FP8 codes by bit arithmetic, no float8
dtype in torch 1.13). `eva forward` on DIR and on DIR.ref.safetensors must then print identical logits.
It also writes malformed folders (bad-*) that eva must refuse with one clear error line.

Usage: /usr/bin/python3 tests/hf_checkpoints.py OUT_DIR
"""
import copy
import json
import os
import shutil
import struct
import sys

import numpy as np
import torch

BLOCK = 128


# ------------------------------------------------------------------------------------------ models
def hf_config(kind):
    c = {
        "architectures": ["DeepseekV2ForCausalLM" if kind == "v2lite" else "DeepseekV3ForCausalLM"],
        "model_type": "deepseek_v2" if kind == "v2lite" else "deepseek_v3",
        "vocab_size": 64, "hidden_size": 160, "intermediate_size": 200, "moe_intermediate_size": 72,
        "num_hidden_layers": 2, "first_k_dense_replace": 1, "num_attention_heads": 2, "num_key_value_heads": 2,
        "n_routed_experts": 8, "num_experts_per_tok": 2, "kv_lora_rank": 136, "qk_nope_head_dim": 16,
        "qk_rope_head_dim": 8, "v_head_dim": 16, "max_position_embeddings": 64, "rope_theta": 10000.0,
        "rms_norm_eps": 1e-06, "hidden_act": "silu", "moe_layer_freq": 1, "tie_word_embeddings": False,
        "attention_bias": False, "torch_dtype": "bfloat16", "bos_token_id": 0, "eos_token_id": 1,
        "aux_loss_alpha": 0.001, "seq_aux": True, "ep_size": 1, "initializer_range": 0.02,
        "rope_scaling": {"type": "yarn", "factor": 4, "original_max_position_embeddings": 16, "beta_fast": 32,
                         "beta_slow": 1},
    }
    if kind == "v2lite":
        c.update({"n_shared_experts": 2, "scoring_func": "softmax", "topk_method": "greedy", "norm_topk_prob": False,
                  "routed_scaling_factor": 1.0, "n_group": 1, "topk_group": 1, "q_lora_rank": None})
        c["rope_scaling"].update({"mscale": 0.707, "mscale_all_dim": 0.707})
    else:
        c.update({"n_shared_experts": 1, "scoring_func": "sigmoid", "topk_method": "noaux_tc", "norm_topk_prob": True,
                  "routed_scaling_factor": 2.5, "n_group": 4, "topk_group": 2, "q_lora_rank": 144,
                  "num_nextn_predict_layers": 1})
        c["rope_scaling"].update({"mscale": 1.0, "mscale_all_dim": 1.0})
    return c


def model_args(c):
    """The same model as official ModelArgs (written here by hand: the mapping under test is eva's)."""
    rs = c["rope_scaling"]
    return {"vocab_size": c["vocab_size"], "dim": c["hidden_size"], "inter_dim": c["intermediate_size"],
            "moe_inter_dim": c["moe_intermediate_size"], "n_layers": c["num_hidden_layers"],
            "n_dense_layers": c["first_k_dense_replace"], "n_heads": c["num_attention_heads"],
            "n_routed_experts": c["n_routed_experts"], "n_shared_experts": c["n_shared_experts"],
            "n_activated_experts": c["num_experts_per_tok"],
            "n_expert_groups": c["n_group"] if c["topk_method"] != "greedy" else 1,
            "n_limited_groups": c["topk_group"] if c["topk_method"] != "greedy" else 1,
            "score_func": c["scoring_func"], "route_scale": c["routed_scaling_factor"],
            "q_lora_rank": c["q_lora_rank"] or 0, "kv_lora_rank": c["kv_lora_rank"],
            "qk_nope_head_dim": c["qk_nope_head_dim"], "qk_rope_head_dim": c["qk_rope_head_dim"],
            "v_head_dim": c["v_head_dim"], "max_seq_len": c["max_position_embeddings"],
            "original_seq_len": rs["original_max_position_embeddings"], "rope_theta": c["rope_theta"],
            "rope_factor": rs["factor"], "beta_fast": rs["beta_fast"], "beta_slow": rs["beta_slow"],
            "mscale": rs["mscale_all_dim"]}


def hf_weights(c, gen):
    """{Hugging Face name: float32 array} for config c (random; Linear std 0.05, norms around 1)."""
    D, H = c["hidden_size"], c["num_attention_heads"]
    nope, rope, v, kv = c["qk_nope_head_dim"], c["qk_rope_head_dim"], c["v_head_dim"], c["kv_lora_rank"]
    w = {}

    def lin(name, o, i):
        w[name] = (torch.randn(o, i, generator=gen) * 0.05).numpy().astype(np.float32)

    def norm(name, n):
        w[name] = (1 + 0.1 * torch.randn(n, generator=gen)).numpy().astype(np.float32)

    def mlp(p, inter):
        lin(p + "gate_proj.weight", inter, D)
        lin(p + "down_proj.weight", D, inter)
        lin(p + "up_proj.weight", inter, D)

    def layer(i):
        p = f"model.layers.{i}."
        norm(p + "input_layernorm.weight", D)
        norm(p + "post_attention_layernorm.weight", D)
        a = p + "self_attn."
        if c["q_lora_rank"]:
            lin(a + "q_a_proj.weight", c["q_lora_rank"], D)
            norm(a + "q_a_layernorm.weight", c["q_lora_rank"])
            lin(a + "q_b_proj.weight", H * (nope + rope), c["q_lora_rank"])
        else:
            lin(a + "q_proj.weight", H * (nope + rope), D)
        lin(a + "kv_a_proj_with_mqa.weight", kv + rope, D)
        norm(a + "kv_a_layernorm.weight", kv)
        lin(a + "kv_b_proj.weight", H * (nope + v), kv)
        lin(a + "o_proj.weight", D, H * v)
        if i < c["first_k_dense_replace"]:
            mlp(p + "mlp.", c["intermediate_size"])
            return
        m = p + "mlp."
        lin(m + "gate.weight", c["n_routed_experts"], D)
        if c["topk_method"] == "noaux_tc":
            w[m + "gate.e_score_correction_bias"] = (0.05 * torch.randn(c["n_routed_experts"], generator=gen)).numpy()
        for e in range(c["n_routed_experts"]):
            mlp(f"{m}experts.{e}.", c["moe_intermediate_size"])
        mlp(m + "shared_experts.", c["moe_intermediate_size"] * c["n_shared_experts"])

    w["model.embed_tokens.weight"] = torch.randn(c["vocab_size"], D, generator=gen).numpy().astype(np.float32)
    for i in range(c["num_hidden_layers"]):
        layer(i)
    norm("model.norm.weight", D)
    lin("lm_head.weight", c["vocab_size"], D)
    return w


def mtp_weights(c, gen):
    """The MTP module as the V3 release stores it: layer num_hidden_layers, with copies of embed and head."""
    L, D = c["num_hidden_layers"], c["hidden_size"]
    sub = dict(c, num_hidden_layers=L + 1)
    w = {k: v for k, v in hf_weights(sub, gen).items() if k.startswith(f"model.layers.{L}.")}
    p = f"model.layers.{L}."
    for n in ("enorm", "hnorm", "shared_head.norm"):
        w[p + n + ".weight"] = np.ones(D, np.float32)
    w[p + "eh_proj.weight"] = np.zeros((D, 2 * D), np.float32)
    w[p + "embed_tokens.weight"] = np.zeros((c["vocab_size"], D), np.float32)
    w[p + "shared_head.head.weight"] = np.zeros((c["vocab_size"], D), np.float32)
    return w


# The official converter's table (inference/convert.py), applied independently of eva.
OFFICIAL = {"embed_tokens": "embed", "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
            "q_proj": "wq", "q_a_proj": "wq_a", "q_a_layernorm": "q_norm", "q_b_proj": "wq_b",
            "kv_a_proj_with_mqa": "wkv_a", "kv_a_layernorm": "kv_norm", "kv_b_proj": "wkv_b", "o_proj": "wo",
            "gate": "gate", "gate_proj": "w1", "down_proj": "w2", "up_proj": "w3", "norm": "norm", "lm_head": "head"}


def official_name(name):
    if name.startswith("model."):
        name = name[len("model."):]
    name = name.replace("self_attn", "attn").replace("mlp", "ffn").replace("e_score_correction_bias", "bias")
    key = name.split(".")[-2]
    return name.replace(key, OFFICIAL[key])


# ----------------------------------------------------------------------------------------- dtypes
def bf16_bits(x):
    u = x.astype(np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16  # round to nearest, ties to even
    return u.astype(np.uint16)


def bf16_value(bits):
    return (bits.astype(np.uint32) << 16).view(np.float32)


def fp8_table(fmt):
    """float value of every non-negative finite code, by the OCP bit layout."""
    e_bits, m_bits, bias = (4, 3, 7) if fmt == "e4m3" else (5, 2, 15)
    last = 0x7E if fmt == "e4m3" else 0x7B
    vals = []
    for code in range(last + 1):
        e, m = code >> m_bits, code & ((1 << m_bits) - 1)
        vals.append(m / (1 << m_bits) * 2.0 ** (1 - bias) if e == 0 else (1 + m / (1 << m_bits)) * 2.0 ** (e - bias))
    return np.array(vals, np.float64)


def fp8_encode(x, fmt):
    """Round to nearest, ties to even code, saturating (|x| ≤ max after scaling anyway)."""
    table = fp8_table(fmt)
    a = np.minimum(np.abs(x.astype(np.float64)), table[-1])
    hi = np.clip(np.searchsorted(table, a), 0, len(table) - 1)
    lo = np.maximum(hi - 1, 0)
    dl, dh = a - table[lo], table[hi] - a
    code = np.where(dl < dh, lo, np.where(dh < dl, hi, np.where(lo % 2 == 0, lo, hi)))
    return (code | np.where(np.signbit(x), 0x80, 0)).astype(np.uint8)


def fp8_decode(codes, fmt):
    table = fp8_table(fmt)
    mag = table[codes & 0x7F]
    return np.where(codes & 0x80, -mag, mag).astype(np.float32)


def quantize_blocks(w, fmt):
    """128×128 blocks (edge blocks partial): scale_inv = max(amax, 1e-4) / max_code in float32."""
    top = np.float32(448.0 if fmt == "e4m3" else 57344.0)
    R, C = w.shape
    sr, sc = -(-R // BLOCK), -(-C // BLOCK)
    codes = np.zeros(w.shape, np.uint8)
    scales = np.zeros((sr, sc), np.float32)
    for i in range(sr):
        for j in range(sc):
            blk = w[i * BLOCK:(i + 1) * BLOCK, j * BLOCK:(j + 1) * BLOCK]
            s = np.float32(max(np.float32(np.abs(blk).max()), np.float32(1e-4))) / top
            scales[i, j] = s
            codes[i * BLOCK:(i + 1) * BLOCK, j * BLOCK:(j + 1) * BLOCK] = fp8_encode((blk / s).astype(np.float32), fmt)
    return codes, scales


def dequant(codes, scales, fmt):
    """kernel.py's weight_dequant: float32(code) · scale_inv of the block, in float32."""
    s = np.repeat(np.repeat(scales, BLOCK, 0), BLOCK, 1)[:codes.shape[0], :codes.shape[1]]
    return (fp8_decode(codes, fmt) * s).astype(np.float32)


def is_linear(name):
    return name.startswith("model.layers.") and name.endswith(".weight") and ".mlp.gate." not in name and \
        ("_proj" in name)


def store(weights, dtype, fp8_fmt="e4m3"):
    """{name: (safetensors dtype, shape, bytes)} and the float32 weights they stand for."""
    stored, effective = {}, {}
    for name, x in weights.items():
        if dtype == "fp8" and is_linear(name) and x.ndim == 2:
            codes, scales = quantize_blocks(x, fp8_fmt)
            stored[name] = ("F8_E4M3" if fp8_fmt == "e4m3" else "F8_E5M2", x.shape, codes.tobytes())
            stored[name + "_scale_inv"] = ("F32", scales.shape, scales.astype("<f4").tobytes())
            effective[name] = dequant(codes, scales, fp8_fmt)
        elif dtype == "f32" or name.endswith("e_score_correction_bias"):
            stored[name] = ("F32", x.shape, x.astype("<f4").tobytes())
            effective[name] = x
        elif dtype == "f16":
            h = x.astype(np.float16)
            stored[name] = ("F16", x.shape, h.astype("<f2").tobytes())
            effective[name] = h.astype(np.float32)
        else:  # bf16, and the non-Linear tensors of fp8
            b = bf16_bits(x)
            stored[name] = ("BF16", x.shape, b.astype("<u2").tobytes())
            effective[name] = bf16_value(b)
    return stored, effective


# ------------------------------------------------------------------------------------ safetensors
def write_safetensors(path, tensors, metadata=None):
    header, offset = {}, 0
    for name, (dtype, shape, data) in tensors.items():
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
    if metadata:
        header["__metadata__"] = metadata
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        for _, (_, _, data) in tensors.items():
            f.write(data)


def read_header(path):
    data = open(path, "rb").read()
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8:8 + n]), data[8 + n:]


def write_folder(path, config, stored, shards):
    os.makedirs(path)
    json.dump(config, open(os.path.join(path, "config.json"), "w"), indent=2)
    names = list(stored)
    if shards == 1:
        write_safetensors(os.path.join(path, "model.safetensors"), stored, {"format": "pt"})
        return
    weight_map = {}
    per = -(-len(names) // shards)
    for k in range(shards):
        file = f"model-{k + 1:05d}-of-{shards:05d}.safetensors"
        part = {n: stored[n] for n in names[k * per:(k + 1) * per]}
        write_safetensors(os.path.join(path, file), part, {"format": "pt"})
        weight_map.update({n: file for n in part})
    json.dump({"metadata": {"total_size": sum(len(v[2]) for v in stored.values())}, "weight_map": weight_map},
              open(os.path.join(path, "model.safetensors.index.json"), "w"), indent=2)


def write_reference(path, config, effective):
    args = model_args(config)
    moe = {"balance": "aux-free" if config["topk_method"] == "noaux_tc" else "none", "gamma": 0.001, "alpha": 0.0001}
    tensors = {official_name(n): ("F32", x.shape, x.astype("<f4").tobytes()) for n, x in effective.items()}
    write_safetensors(path, tensors, {"config": json.dumps(args), "moe": json.dumps(moe), "format": "eva"})


# ------------------------------------------------------------------------------------- malformed
def edit_shard(folder, file, fn):
    p = os.path.join(folder, file)
    header, data = read_header(p)
    meta = header.pop("__metadata__", None)
    tensors = {n: (e["dtype"], e["shape"], data[e["data_offsets"][0]:e["data_offsets"][1]]) for n, e in header.items()}
    fn(tensors)
    write_safetensors(p, tensors, meta)


def malformed(out, good):
    """Each bad-X folder is `good` (a sharded FP8 V3-like folder) with one defect."""
    index = json.load(open(os.path.join(good, "model.safetensors.index.json")))
    wm = index["weight_map"]
    shards = sorted(set(wm.values()))
    scale = next(n for n in wm if n.endswith("_scale_inv"))
    bf16 = next(n for n in wm if n.endswith("layernorm.weight"))

    def variant(name, fn):
        d = os.path.join(out, "bad-" + name)
        shutil.copytree(good, d)
        fn(d)

    variant("missing-shard", lambda d: os.remove(os.path.join(d, shards[-1])))

    def twice(d):  # the first shard's first tensor copied into the second shard
        first = next(n for n, f in wm.items() if f == shards[0])
        header, data = read_header(os.path.join(d, shards[0]))
        e = header[first]
        edit_shard(d, shards[1], lambda t: t.update({first: (e["dtype"], e["shape"], data[e["data_offsets"][0]:e["data_offsets"][1]])}))
    variant("tensor-in-two-shards", twice)

    def bad_scale(d):
        def f(t):
            dt, shape, data = t[scale]
            t[scale] = (dt, [shape[0], shape[1] + 1], data + b"\0" * 4 * shape[0])
        edit_shard(d, wm[scale], f)
    variant("scale-shape", bad_scale)

    def unknown_dtype(d):
        edit_shard(d, wm[bf16], lambda t: t.update({bf16: ("Q4_K", t[bf16][1], t[bf16][2])}))
    variant("unknown-dtype", unknown_dtype)

    def unsupported_dtype(d):
        edit_shard(d, wm[bf16], lambda t: t.update({bf16: ("I16", t[bf16][1], t[bf16][2])}))
    variant("int-dtype", unsupported_dtype)

    def config_type(d):
        c = json.load(open(os.path.join(d, "config.json")))
        c["hidden_size"] = str(c["hidden_size"])
        json.dump(c, open(os.path.join(d, "config.json"), "w"))
    variant("config-type", config_type)

    def config_unknown(d):
        c = json.load(open(os.path.join(d, "config.json")))
        c["sliding_window"] = 4096
        json.dump(c, open(os.path.join(d, "config.json"), "w"))
    variant("config-unknown-field", config_unknown)

    def missing_tensor(d):
        edit_shard(d, wm[bf16], lambda t: t.pop(bf16))
        i = copy.deepcopy(index)
        del i["weight_map"][bf16]
        json.dump(i, open(os.path.join(d, "model.safetensors.index.json"), "w"))
    variant("missing-tensor", missing_tensor)

    def missing_scale(d):
        edit_shard(d, wm[scale], lambda t: t.pop(scale))
        i = copy.deepcopy(index)
        del i["weight_map"][scale]
        json.dump(i, open(os.path.join(d, "model.safetensors.index.json"), "w"))
    variant("missing-scale", missing_scale)

    def wrong_index(d):
        i = copy.deepcopy(index)
        i["weight_map"][bf16] = next(s for s in shards if s != wm[bf16])
        json.dump(i, open(os.path.join(d, "model.safetensors.index.json"), "w"))
    variant("index-wrong-shard", wrong_index)

    def escape(d):
        i = copy.deepcopy(index)
        i["weight_map"][bf16] = "../" + wm[bf16]
        json.dump(i, open(os.path.join(d, "model.safetensors.index.json"), "w"))
    variant("index-escape", escape)

    def extra(d):
        edit_shard(d, shards[0], lambda t: t.update({"model.layers.0.self_attn.rotary_emb.inv_freq": ("F32", [4], b"\0" * 16)}))
        i = copy.deepcopy(index)
        i["weight_map"]["model.layers.0.self_attn.rotary_emb.inv_freq"] = shards[0]
        json.dump(i, open(os.path.join(d, "model.safetensors.index.json"), "w"))
    variant("extra-tensor", extra)

    def bad_mscale(d):
        c = json.load(open(os.path.join(d, "config.json")))
        c["rope_scaling"]["mscale_all_dim"] = 0.5
        json.dump(c, open(os.path.join(d, "config.json"), "w"))
    variant("config-mscale", bad_mscale)


def main(out):
    if os.path.exists(out):
        shutil.rmtree(out)
    os.makedirs(out)
    gen = torch.Generator().manual_seed(17)
    for kind in ("v2lite", "v3"):
        c = hf_config(kind)
        w = hf_weights(c, gen)
        mtp = mtp_weights(c, gen) if c.get("num_nextn_predict_layers") else {}
        for dtype, shards, fmt in (("f32", 1, None), ("bf16", 3, None), ("f16", 1, None), ("fp8", 4, "e4m3"),
                                   ("fp8", 1, "e5m2")):
            name = f"{kind}-{dtype}{'-' + fmt if fmt else ''}-{'sharded' if shards > 1 else 'single'}"
            stored, effective = store(w, dtype, fmt or "e4m3")
            mtp_stored, _ = store(mtp, dtype, fmt or "e4m3")
            cfg = dict(c)
            if dtype == "fp8":
                cfg["quantization_config"] = {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
                                              "weight_block_size": [128, 128]}
            write_folder(os.path.join(out, name), cfg, {**stored, **mtp_stored}, shards)
            write_reference(os.path.join(out, name + ".ref.safetensors"), cfg, effective)
    malformed(out, os.path.join(out, "v3-fp8-e4m3-sharded"))


if __name__ == "__main__":
    main(sys.argv[1])
