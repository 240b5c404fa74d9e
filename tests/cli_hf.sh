#!/usr/bin/env bash
# Hugging Face checkpoints end to end. tests/hf_checkpoints.py writes tiny V2-Lite-like and V3-like folders
# (single file and shards; F32, F16, BF16, FP8 E4M3/E5M2 with partial 128x128 blocks; YaRN; an MTP module)
# and, beside each, the same float32 weights in eva's layout computed without eva. Checks that
#   * `eva forward --weights DIR` prints logits bit-identical to the eva-layout file (absorb and naive);
#   * eva → hf → eva (f32) round-trips bit for bit, and hf → eva (fp8) loads;
#   * every malformed folder gives one stderr line, exit status 2, nothing on stdout;
#   * `eva inspect` of the V3 config.json gives 671B total, 37B activated, 685B with the MTP module.
# Usage: tests/cli_hf.sh path/to/eva path/to/hf_checkpoints.py
set -uo pipefail
eva=$1
gen=$2
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
/usr/bin/python3 "$gen" "$dir/ck" || { echo "FAIL: fixture script"; exit 1; }
tokens="1 5 9 33 2 60 7 7 12 40 41 3 0 63 8 19 22 5"   # 18 tokens: past original_max_position_embeddings 16

same_logits() {  # NAME A B ATTN: forward on A and on B must give byte-identical .npy files
  "$eva" forward --weights "$2" --tokens "$tokens" --attn "$4" --out "$dir/a.npy" >/dev/null 2>"$dir/err" || { fail "$1: $(cat "$dir/err")"; return; }
  "$eva" forward --weights "$3" --tokens "$tokens" --attn "$4" --out "$dir/b.npy" >/dev/null 2>"$dir/err" || { fail "$1: $(cat "$dir/err")"; return; }
  cmp -s "$dir/a.npy" "$dir/b.npy" || fail "$1: logits differ"
}

for d in "$dir"/ck/v*-*; do
  [[ -d $d ]] || continue
  name=$(basename "$d")
  same_logits "$name absorb" "$d" "$d.ref.safetensors" absorb
done
same_logits "v3-fp8 naive" "$dir/ck/v3-fp8-e4m3-sharded" "$dir/ck/v3-fp8-e4m3-sharded.ref.safetensors" naive
same_logits "v2lite-bf16 naive" "$dir/ck/v2lite-bf16-sharded" "$dir/ck/v2lite-bf16-sharded.ref.safetensors" naive

# eva → hf (sharded f32) → eva: the same bytes of every tensor, hence the same logits.
for kind in v2lite v3; do
  ref="$dir/ck/$kind-f32-single.ref.safetensors"
  "$eva" convert "$ref" "$dir/$kind-hf" --layout hf --dtype f32 --max-shard-gb 0.0005 >/dev/null 2>"$dir/err" || fail "convert $kind to hf: $(cat "$dir/err")"
  [[ -f "$dir/$kind-hf/model.safetensors.index.json" ]] || fail "convert $kind: no index for a sharded folder"
  ls "$dir/$kind-hf" | grep -q '\.tmp' && fail "convert $kind: a temporary was left"
  "$eva" convert "$dir/$kind-hf" "$dir/$kind-back.safetensors" --layout eva --dtype f32 >/dev/null 2>"$dir/err" || fail "convert $kind back: $(cat "$dir/err")"
  same_logits "$kind eva→hf→eva" "$ref" "$dir/$kind-back.safetensors" absorb
  same_logits "$kind eva vs hf" "$ref" "$dir/$kind-hf" absorb
  # Writing over an existing folder replaces it whole.
  "$eva" convert "$ref" "$dir/$kind-hf" --layout hf --dtype fp8 >/dev/null 2>"$dir/err" || fail "convert $kind fp8: $(cat "$dir/err")"
  [[ -f "$dir/$kind-hf/model.safetensors" && ! -e "$dir/$kind-hf/model.safetensors.index.json" ]] || fail "convert $kind: old folder content left"
  "$eva" forward --weights "$dir/$kind-hf" --tokens "$tokens" >/dev/null 2>"$dir/err" || fail "forward $kind fp8 folder: $(cat "$dir/err")"
done

expect_error() {  # NAME STDERR_SUBSTRING COMMAND...: exit 2, one stderr line containing the substring, no stdout
  local name=$1 want=$2; shift 2
  "$@" >"$dir/out" 2>"$dir/err"
  local rc=$?
  [[ $rc == 2 ]] || fail "$name: exit $rc, want 2"
  [[ ! -s "$dir/out" ]] || fail "$name: wrote to stdout: $(head -c 100 "$dir/out")"
  [[ $(wc -l <"$dir/err") == 1 ]] || fail "$name: stderr is not one line: $(cat "$dir/err")"
  grep -qF -- "$want" "$dir/err" || fail "$name: stderr [$(cat "$dir/err")] lacks [$want]"
}
bad() { expect_error "bad-$1" "$2" "$eva" forward --weights "$dir/ck/bad-$1" --tokens "1 2"; }
bad missing-shard "model-00004-of-00004.safetensors is missing"
bad tensor-in-two-shards "is in two shards"
bad scale-shape "expected [2, 2]"
bad unknown-dtype "unknown dtype \"Q4_K\""
bad int-dtype "has dtype I16"
bad config-type "field 'hidden_size' must be an integer"
bad config-unknown-field "unknown field 'sliding_window'"
bad missing-tensor "missing tensor \"model.layers.0.input_layernorm.weight\""
bad missing-scale "weight_scale_inv\" is missing"
bad index-wrong-shard "but the index says"
bad index-escape "is not a .safetensors file name"
bad extra-tensor "rotary_emb.inv_freq\" is not a DeepSeek-V2/V3 tensor name"
bad config-mscale "must equal mscale_all_dim"
expect_error "convert into a missing folder" "cannot create the temporary folder" "$eva" convert "$dir/ck/v3-f32-single" "$dir/no/such/out" --layout hf
expect_error "convert to a file path that is a folder" "not a folder" "$eva" convert "$dir/ck/v3-f32-single" "$dir/ck/v3-f32-single.ref.safetensors" --layout hf

# V3's released config alone: the report's figures.
v3=$(dirname "$gen")/checkpoints/deepseek-v3-config.json
"$eva" inspect "$v3" --json >"$dir/v3.json" 2>"$dir/err" || fail "inspect v3: $(cat "$dir/err")"
/usr/bin/python3 - "$dir/v3.json" <<'PY' || fail "inspect v3 figures"
import json, sys
p = json.load(open(sys.argv[1]))["parameters"]
total, active, stored = p["total"] / 1e9, p["activated_per_token"] / 1e9, p["stored_elements"] / 1e9
print(f"V3: {total:.1f}B total, {active:.1f}B activated, {stored:.2f}B stored elements with the MTP module")
assert round(total) == 671, total
assert 36.5 < active < 38, active   # the report's 37B (README_WEIGHTS: 36.7B + the embedding row eva counts)
assert round(stored) == 685, stored  # the release's 685B: main + MTP module (+ its embed/head copies) + scales
PY
"$eva" inspect "$dir/ck/v3-fp8-e4m3-sharded" --json >"$dir/i.json" 2>"$dir/err" || fail "inspect folder: $(cat "$dir/err")"
/usr/bin/python3 - "$dir/i.json" "$dir/ck/v3-fp8-e4m3-sharded" <<'PY' || fail "inspect folder figures"
import glob, json, math, struct, sys
r = json.load(open(sys.argv[1]))
elements = scales = 0
for f in glob.glob(sys.argv[2] + "/*.safetensors"):
    data = open(f, "rb").read()
    (n,) = struct.unpack("<Q", data[:8])
    for name, e in json.loads(data[8:8 + n]).items():
        if name == "__metadata__":
            continue
        k = math.prod(e["shape"])
        elements += k
        scales += k if name.endswith("_scale_inv") else 0
p = r["parameters"]
# The closed forms (parameter_count, mtp_parameter_count, fp8_scale_count) against the headers.
assert p["fp8_scales"] == scales, (p["fp8_scales"], scales)
assert p["stored_elements"] == elements, (p["stored_elements"], elements)
s = r["fp8_scales"]
assert r["layout"] == "hf" and r["mtp_modules"] == 1 and r["stored_by_dtype"]["F8_E4M3"]["tensors"] == s["tensors"], r
assert s["partial_blocks"] > 0 and s["blocks"] > s["partial_blocks"], s
PY

[[ $failures == 0 ]] && echo "cli_hf: all checks passed"
exit $((failures > 0))
