#!/usr/bin/env bash
# Hostile and clumsy inputs to every `eva` command (issue 12): each must print exactly one line
# `eva: error: …` on stderr, exit with status 2, and touch no file — the outputs that existed before keep
# their bytes and mtimes, and no new file (no stray .tmp, no half checkpoint) appears. Also checks, at the
# command line, that a resumed run equals a straight one bit for bit. Usage: tests/cli_hostile.sh path/to/eva
set -uo pipefail
eva=$1
py=/usr/bin/python3
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cd "$dir" || exit 1
failures=0
cases=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# A listing of every file with its size, mtime and hash: what "touch no file" compares.
snapshot() { find . -path ./err -prune -o -path ./out -prune -o -type f -printf '%p %s %T@\n' | sort; sha256sum $(find . -path ./err -prune -o -path ./out -prune -o -type f -print | sort) 2>/dev/null; }

# expect_error NAME STDERR_SUBSTRING COMMAND... : exit 2, one stderr line "eva: error: …" containing
# the substring, no file created or changed. Stdin is empty unless $stdin names a file.
expect_error() {
  local name=$1 want=$2; shift 2
  cases=$((cases + 1))
  local before; before=$(snapshot)
  timeout 60 "$@" <"${stdin:-/dev/null}" >out 2>err
  local rc=$?
  [[ $rc == 2 ]] || { fail "$name: exit $rc, want 2 ($(head -c 300 err))"; return; }
  [[ $(wc -l <err) == 1 ]] || fail "$name: stderr is not one line: $(head -c 600 err)"
  grep -q '^eva: error: ' err || fail "$name: stderr does not start with 'eva: error: ': $(head -c 300 err)"
  grep -q 'internal error' err && fail "$name: an internal error: $(head -c 300 err)"
  (( $(wc -c <err) < 600 )) || fail "$name: the error line is $(wc -c <err) bytes long"
  grep -qF -- "$want" err || fail "$name: stderr [$(head -c 300 err)] lacks [$want]"
  [[ "$(snapshot)" == "$before" ]] || fail "$name: files changed: $(diff <(echo "$before") <(snapshot) | head -5)"
}

# A copy of safetensors file $1 as $2 with its header JSON transformed by the python expression $3
# (on `h`, the parsed header; data bytes unchanged). `meta(h, key)` / `setmeta(h, key, v)` edit a
# __metadata__ entry as JSON.
edit_header() {
  "$py" - "$1" "$2" "$3" <<'EOF'
import json, struct, sys
src, dst, expr = sys.argv[1:4]
b = open(src, 'rb').read()
n = struct.unpack('<Q', b[:8])[0]
h = json.loads(b[8:8 + n])
def meta(h, k): return json.loads(h['__metadata__'][k])
def setmeta(h, k, v): h['__metadata__'][k] = json.dumps(v)
exec(expr)
t = json.dumps(h).encode()
t += b' ' * ((8 - len(t) % 8) % 8)
open(dst, 'wb').write(struct.pack('<Q', len(t)) + t + b[8 + n:])
EOF
}

# ------------------------------------------------------------------ fixtures (made before the cases)
cat >tiny.json <<'EOF'
{"vocab_size": 256, "dim": 8, "inter_dim": 16, "moe_inter_dim": 8, "n_layers": 2, "n_dense_layers": 1,
 "n_heads": 2, "n_routed_experts": 4, "n_shared_experts": 1, "n_activated_experts": 2, "n_expert_groups": 2,
 "n_limited_groups": 1, "score_func": "sigmoid", "q_lora_rank": 0, "kv_lora_rank": 4, "qk_nope_head_dim": 2,
 "qk_rope_head_dim": 2, "v_head_dim": 2, "max_seq_len": 16}
EOF
"$py" -c "print('the quick brown fox jumps over the lazy dog. ' * 40)" >text.txt
train=(train --config tiny.json --data text.txt --batch 2 --seq-len 8 --warmup 1 --eval-every 1000 --json)
"$eva" init --config tiny.json --out model.safetensors >/dev/null || fail "init tiny"
"$eva" "${train[@]}" --steps 4 --stop-after 2 --out ck.safetensors >ck1.jsonl || fail "train 2 of 4 steps"
cp ck.safetensors ck_at2.safetensors
cp ck.optim.safetensors ck_at2.optim.safetensors
echo 'old logits' >logits.npy
echo 'old grads' >grads.safetensors
mkdir adir somedir.json
mkfifo fifo.npy

# --- the CLI-level resume equality: 2 + 2 steps of a 4-step run == 4 straight, bit for bit
"$eva" "${train[@]}" --steps 4 >straight.jsonl || fail "train straight"
"$eva" train --resume ck.safetensors --data text.txt --json --eval-every 1000 --out ck.safetensors >ck2.jsonl || fail "resume"
losses() { "$py" -c "import json,sys; print([json.loads(l)['loss'] for f in sys.argv[1:] for l in open(f) if '\"loss\"' in l and 'final' not in l])" "$@"; }
[[ "$(losses straight.jsonl)" == "$(losses ck1.jsonl ck2.jsonl)" ]] ||
  fail "resume: 2 + 2 steps differ from 4 straight: $(losses straight.jsonl) vs $(losses ck1.jsonl ck2.jsonl)"
rm ck2.jsonl straight.jsonl
cp ck_at2.safetensors ck.safetensors
cp ck_at2.optim.safetensors ck.optim.safetensors

# --- 1. derived sizes that overflow
echo '{"n_heads": 2305843009213693952}' >heads.json
expect_error "n_heads 2^61" "n_heads" "$eva" init --config heads.json --out new.safetensors
echo '{"dim": 4611686018427387904}' >dim.json
expect_error "moe route dim 2^62" "dim" "$eva" moe route --config dim.json
echo '{"vocab_size": 16777216, "dim": 16777216}' >product.json
expect_error "vocab x dim beyond 2^48" "overflows" "$eva" init --config product.json --out new.safetensors
expect_error "gemm --m 2^62" "overflows" "$eva" gemm --m 4611686018427387904 --n 4 --k 4
expect_error "fp8 gemm-error --m 2^62" "overflows" "$eva" fp8 gemm-error --m 4611686018427387904 --n 4 --k 4
expect_error "mla memory --seq-len 2^63-1" "overflows" "$eva" mla memory --config v3 --seq-len 9223372036854775807
edit_header model.safetensors heads.safetensors "c = meta(h, 'config'); c['n_heads'] = 2305843009213693952; setmeta(h, 'config', c)"
expect_error "generate: checkpoint with n_heads 2^61" "n_heads" "$eva" generate --weights heads.safetensors

# --- 2. nesting 100,000 deep
"$py" -c "print('[' * 100000 + ']' * 100000)" >deep.json
"$py" -c "print('{\"dim\":' * 100000 + '1' + '}' * 100000)" >deep_object.json
expect_error "config nested 100,000 deep" "nested deeper than 64" "$eva" init --config deep.json --out new.safetensors
expect_error "moe config nested deep" "nested deeper than 64" "$eva" moe route --config deep_object.json
edit_header model.safetensors deepmeta.safetensors "h['__metadata__']['config'] = open('deep.json').read()"
expect_error "__metadata__ config nested deep" "nested deeper than 64" "$eva" generate --weights deepmeta.safetensors
"$py" - <<'EOF'
import struct
h = ('{"t": {"dtype": "F32", "shape": ' + '[' * 100000 + ']' * 100000 + ', "data_offsets": [0, 0]}}').encode()
open('deepshape.safetensors', 'wb').write(struct.pack('<Q', len(h)) + h)
EOF
expect_error "shape nested deep" "nested deeper than 64" "$eva" generate --weights deepshape.safetensors

# --- 3. allocation before validation
edit_header model.safetensors bigmoe.safetensors "c = meta(h, 'config'); c['moe_inter_dim'] = 1 << 20; setmeta(h, 'config', c)"
expect_error "metadata moe_inter_dim 2^20" "the file holds" "$eva" generate --weights bigmoe.safetensors
"$py" - <<'EOF'
import struct
d = "{'descr': '<f4', 'fortran_order': False, 'shape': (268435456,), }"
d += ' ' * (117 - len(d)) + '\n'
open('claims1g.npy', 'wb').write(b'\x93NUMPY\x01\x00' + struct.pack('<H', len(d)) + d.encode() + b'\0' * 16)
EOF
expect_error "144-byte npy claiming 1 GiB" "needs 1073741824 data bytes, the file holds 16" "$eva" fp8 quantize --input claims1g.npy --output new.npy
expect_error "/dev/zero as --weights" "character device" "$eva" generate --weights /dev/zero
expect_error "/dev/zero as --data" "character device" "$eva" train --data /dev/zero --steps 1
expect_error "/dev/zero as fp8 --input" "character device" "$eva" fp8 quantize --input /dev/zero
expect_error "/dev/zero as moe --input" "character device" "$eva" moe route --input /dev/zero
stdin=/dev/zero expect_error "/dev/zero as fp8 encode stdin" "stdin" "$eva" fp8 encode
expect_error "a FIFO as --input" "FIFO" "$eva" fp8 quantize --input fifo.npy
if (( $(awk '/MemAvailable/ {print $2}' /proc/meminfo) < 60000000 )); then
  expect_error "init v2-lite in fp32" "the model needs 62.8 GB" "$eva" init --config v2-lite --out new.safetensors
fi

# --- 4. torn checkpoint pair, --out a directory
"$eva" "${train[@]}" --steps 4 --stop-after 3 --out later.safetensors >/dev/null || fail "train 3 steps"
cp later.optim.safetensors torn.optim.safetensors
cp ck.safetensors torn.safetensors
expect_error "torn pair (new optimizer, old model)" "the pair is torn" "$eva" train --resume torn.safetensors --data text.txt
cp later.safetensors other.safetensors
cp ck.optim.safetensors other.optim.safetensors
expect_error "torn pair (old optimizer, new model)" "the pair is torn" "$eva" train --resume other.safetensors --data text.txt
rm -f other.optim.safetensors
expect_error "missing optimizer file" "cannot open" "$eva" train --resume other.safetensors --data text.txt
expect_error "init --out a directory" "is a directory" "$eva" init --config tiny.json --out adir
expect_error "train --out a directory" "is a directory" "$eva" "${train[@]}" --steps 1 --out adir
expect_error "train --out in a missing folder" "does not exist" "$eva" "${train[@]}" --steps 1 --out nofolder/x.safetensors
expect_error "--save-every without --out" "needs --out" "$eva" "${train[@]}" --steps 2 --save-every 1

# --- 5. training state trusted on resume
state_case() {  # NAME WANT PYTHON-EDIT-OF-t (the training state)
  edit_header ck.safetensors bad.safetensors "t = meta(h, 'training'); $3; setmeta(h, 'training', t)"
  cp ck.optim.safetensors bad.optim.safetensors
  expect_error "$1" "$2" "$eva" train --resume bad.safetensors --data text.txt
  rm -f bad.safetensors bad.optim.safetensors
}
state_case "step 1e12" "'step'" "t['step'] = 1e12"
state_case "negative step" "'step'" "t['step'] = -3"
state_case "step past the total" "'step' must be an integer in 0..4" "t['step'] = 9"
state_case "beta1 1.0" "beta1 must be in [0, 1)" "t['config']['beta1'] = 1.0"
state_case "eps -1" "eps must be a finite number > 0" "t['config']['eps'] = -1"
state_case "fractional batch" "'batch' must be an integer" "t['config']['batch'] = 2.5"
state_case "lr as a string" "'lr' must be a finite number" "t['config']['lr'] = 'fast'"
state_case "data position off" "'data_position'" "t['data_position'] = 1"
state_case "non-object training entry" "training state must be an object" "t = [1, 2]"
state_case "non-object config" "config must be an object" "t['config'] = 'x'"
edit_header ck.safetensors bad.safetensors "h['__metadata__']['moe'] = '[1]'"
cp ck.optim.safetensors bad.optim.safetensors
expect_error "non-object moe entry" "must be an object with balance" "$eva" train --resume bad.safetensors --data text.txt
rm -f bad.safetensors bad.optim.safetensors

# --- 6. resume continues the run: contradicting flags name both values; a new total must be larger
expect_error "resume --batch" "--batch 4 contradicts the checkpoint ck.safetensors (2)" "$eva" train --resume ck.safetensors --data text.txt --batch 4
expect_error "resume --seq-len" "--seq-len 4 contradicts" "$eva" train --resume ck.safetensors --data text.txt --seq-len 4
expect_error "resume --lr" "--lr 0.01 contradicts the checkpoint ck.safetensors (0.003)" "$eva" train --resume ck.safetensors --data text.txt --lr 0.01
expect_error "resume --precision" "--precision fp8 contradicts the checkpoint ck.safetensors (fp32)" "$eva" train --resume ck.safetensors --data text.txt --precision fp8
expect_error "resume --seed" "--seed 7 contradicts the checkpoint ck.safetensors (1)" "$eva" train --resume ck.safetensors --data text.txt --seed 7
expect_error "resume --config" "--config mini contradicts" "$eva" train --resume ck.safetensors --data text.txt --config mini
expect_error "resume --steps below the step done" "has done 2 steps already" "$eva" train --resume ck.safetensors --data text.txt --steps 2
"$py" -c "print('another corpus entirely, of a different size. ' * 30)" >other.txt
expect_error "resume on another corpus" "the run trained on a corpus of" "$eva" train --resume ck.safetensors --data other.txt

# --- 7. --threads
expect_error "--threads 100000" "thread count 100000 is outside" "$eva" train --threads 100000 --steps 1
expect_error "--threads 1000" "thread count 1000 is outside" "$eva" train --threads 1000 --steps 1

# --- 8. forward --out is written only after every argument was checked
expect_error "forward: bad --targets" "--targets" "$eva" forward --weights model.safetensors --tokens "1 2" --targets "1 999" --out logits.npy
expect_error "forward: --targets length" "as many tokens" "$eva" forward --weights model.safetensors --tokens "1 2" --targets "1" --out logits.npy --grads-out grads.safetensors
expect_error "forward: --grads-out without --targets" "needs --targets" "$eva" forward --weights model.safetensors --tokens "1 2" --grads-out grads.safetensors
expect_error "forward: --out a directory" "is a directory" "$eva" forward --weights model.safetensors --tokens "1 2" --out adir
expect_error "forward: token id too large" "is not a token id in 0..255" "$eva" forward --weights model.safetensors --tokens "1 256"
expect_error "forward: a signed token id" "is not a token id" "$eva" forward --weights model.safetensors --tokens "+1"
expect_error "forward: a 10 MB token" "characters)" "$eva" forward --weights model.safetensors --tokens "$("$py" -c "print('9' * 100000)")"

# --- 9. lenient parsers
echo '{"dim": 256} trailing garbage' >trailing.json
expect_error "config with trailing garbage" "not valid JSON" "$eva" init --config trailing.json --out new.safetensors
expect_error "moe config with trailing garbage" "not valid JSON" "$eva" moe route --config trailing.json
edit_header model.safetensors nul.safetensors "pass"
"$py" - <<'EOF'
import struct
b = bytearray(open('nul.safetensors', 'rb').read())
n = struct.unpack('<Q', b[:8])[0]
h = bytes(b[8:8 + n]).rstrip(b' ')
h = h + b'\0' * (n - len(h))  # the same length, NUL-padded instead of space-padded
open('nul.safetensors', 'wb').write(b[:8] + h + b[8 + n:])
EOF
expect_error "NUL-padded safetensors header" "NUL byte" "$eva" generate --weights nul.safetensors
npy() {  # FILE DESCR ORDER SHAPE DATA-BYTES
  "$py" - "$@" <<'EOF'
import struct, sys
f, descr, order, shape, n = sys.argv[1:6]
d = "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }" % (descr, order, shape)
d += ' ' * (117 - len(d)) + '\n'
open(f, 'wb').write(b'\x93NUMPY\x01\x00' + struct.pack('<H', len(d)) + d.encode() + b'\0' * int(n))
EOF
}
npy i4.npy '<i4' False '(4, 256)' 4096
expect_error "moe route: int32 .npy" "dtype '<i4'" "$eva" moe route --input i4.npy
npy fortran.npy '<f4' True '(4, 256)' 4096
expect_error "moe route: Fortran order" "Fortran order" "$eva" moe route --input fortran.npy
npy r3.npy '<f4' False '(2, 2, 256)' 4096
expect_error "moe route: rank 3" "rank 3" "$eva" moe route --input r3.npy
npy short.npy '<f4' False '(4, 256)' 4095
expect_error "moe route: truncated data" "needs 4096 data bytes, the file holds 4095" "$eva" moe route --input short.npy
npy dims.npy '<f4' False '(4, 8)' 128
expect_error "moe route: rows of the wrong width" "rows of 8 features" "$eva" moe route --input dims.npy
expect_error "--temperature nan" "must be a finite number" "$eva" generate --weights model.safetensors --temperature nan
expect_error "--lr nan" "--lr: must be a finite number" "$eva" train --lr nan --steps 1
expect_error "--skew nan" "--skew: must be a finite number" "$eva" moe route --skew nan
expect_error "--lr inf" "--lr: " "$eva" moe route --balance seq-loss --lr inf
expect_error "--std nan" "must be a finite number" "$eva" init --std nan --out new.safetensors
"$py" -c "import json; print(json.dumps({'score_func': 'x' * 10000000}))" >longstring.json
expect_error "a 10 MB string value" "characters)" "$eva" init --config longstring.json --out new.safetensors
expect_error "a directory as --config" "is a directory" "$eva" init --config somedir.json --out new.safetensors
expect_error "a directory as --input" "is a directory" "$eva" fp8 quantize --input adir
expect_error "a directory as moe --input" "is a directory" "$eva" moe route --input adir
expect_error "a directory as --weights" "directory" "$eva" generate --weights adir
printf 'x' >one_byte.safetensors
expect_error "a 1-byte checkpoint" "too short" "$eva" generate --weights one_byte.safetensors
echo '{"dim": 1e999}' >huge_number.json
expect_error "a number beyond double (found by fuzz_config)" "number overflow" "$eva" init --config huge_number.json --out new.safetensors
echo '[1]' >array.json
expect_error "a config that is an array" "must be a JSON object" "$eva" init --config array.json --out new.safetensors
printf '1.0\n0x3F80\n' >values.txt
stdin=values.txt expect_error "fp8 encode: a short hex pattern" "stdin line 2" "$eva" fp8 encode
printf '0x7E\n0x100\n' >codes.txt
stdin=codes.txt expect_error "fp8 decode: a 3-digit code" "stdin line 2" "$eva" fp8 decode
stdin=adir expect_error "fp8 encode: a directory as stdin" "stdin" "$eva" fp8 encode

(( failures == 0 )) || { echo "$failures of $cases hostile cases failed"; exit 1; }
echo "all $cases hostile cases: one error line, exit 2, no file touched"
