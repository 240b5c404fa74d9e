#!/usr/bin/env bash
# Distributed training under mpirun (issue 16), checked against the single process bit for bit:
#   - data parallel on 1, 2 and 4 ranks (oversubscribed on a 2-core machine): every step's losses,
#     gradient norm and balance figures, the final validation loss and sample, and the saved weights;
#   - with MTP modules (their MoE blocks balance on counts summed over the ranks);
#   - expert parallel (--ep) on 2 and 4 ranks, and with data parallel (4 ranks, --ep 2), weights and
#     AdamW's moments included; node-limited routing (--max-nodes) against a single process emulating
#     the node layout (--nodes); the traffic figures add up over the ranks; each rank of --ep E holds
#     1/E of the routed experts' weights and moments;
#   - a run stopped on 4 ranks resumes on 1 and on 2 and ends as the uninterrupted run (also with --ep);
#   - faults: bad input on one rank, arguments that differ between ranks, a killed rank — every rank
#     ends promptly, and no checkpoint is left half-written.
# The reference is the plain `eva train` process (no MPI at all); the comparison is a separate Python
# script that reads the JSON lines. Usage: tests/cli_mpi.sh path/to/eva (an EVA_MPI build)
set -uo pipefail
eva=$(realpath "$1")
py=/usr/bin/python3
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cd "$dir" || exit 1
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
# CI runs as root; more ranks than cores need --oversubscribe.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mpi() { local n=$1; shift; timeout 300 mpirun --oversubscribe -np "$n" "$@"; }

cat >tiny.json <<'EOF'
{"vocab_size": 256, "dim": 16, "inter_dim": 32, "moe_inter_dim": 8, "n_layers": 3, "n_dense_layers": 1,
 "n_heads": 2, "n_routed_experts": 8, "n_shared_experts": 1, "n_activated_experts": 2, "n_expert_groups": 2,
 "n_limited_groups": 1, "score_func": "sigmoid", "q_lora_rank": 0, "kv_lora_rank": 8, "qk_nope_head_dim": 4,
 "qk_rope_head_dim": 4, "v_head_dim": 4, "max_seq_len": 32}
EOF
"$py" -c "
import random
random.seed(3)
words = 'the quick brown fox jumps over lazy dog and cat sat on a mat while rain fell'.split()
print(' '.join(random.choice(words) for _ in range(3000)))" >text.txt
train=(train --config tiny.json --data text.txt --batch 8 --seq-len 16 --warmup 2 --steps 6 --eval-every 3 --json --threads 1 --shards 4)

# same A B: every step line and the final line agree in every field but the timing and traffic ones.
same() {
  "$py" - "$1" "$2" <<'EOF'
import json, sys
def lines(p):
    out = []
    for l in open(p):
        j = json.loads(l)
        for k in ('tokens_per_s', 'seconds', 'traffic', 'checkpoint', 'state_bytes'):
            j.pop(k, None)
        out.append(j)
    return out
a, b = lines(sys.argv[1]), lines(sys.argv[2])
if len(a) != len(b) or len(a) < 4:
    sys.exit(f'{len(a)} lines vs {len(b)}')
for x, y in zip(a, b):
    if x != y:  # == on floats parsed from the same shortest round-trip text: bit-identical values
        sys.exit(f'differ:\n  {x}\n  {y}')
EOF
}
# same_weights A B: the tensors of two checkpoints are the same bytes (metadata: run id, may differ).
same_weights() {
  "$py" - "$1" "$2" <<'EOF'
import json, struct, sys
def tensors(p):
    b = open(p, 'rb').read()
    n = struct.unpack('<Q', b[:8])[0]
    h = json.loads(b[8:8 + n]); h.pop('__metadata__', None)
    return h, b[8 + n:]
(ha, da), (hb, db) = tensors(sys.argv[1]), tensors(sys.argv[2])
if ha != hb or da != db:
    sys.exit('the tensors differ')
EOF
}

# fault NAME STATUS_WANTED STDERR_SUBSTRING COMMAND...: ends within 60 s with that status and message.
fault() {
  local name=$1 want=$2 msg=$3; shift 3
  local t0=$SECONDS
  timeout 60 "$@" >out 2>err
  local rc=$? took=$((SECONDS - t0))
  [[ $rc == "$want" ]] || fail "$name: exit $rc, want $want ($(head -c 400 err))"
  [[ $took -lt 60 ]] || fail "$name: took $took s"
  grep -q -- "$msg" err || fail "$name: no '$msg' on stderr: $(head -c 400 err)"
}

# ------------------------------------------------------------------------------ data parallel
"$eva" "${train[@]}" --out ref.safetensors >ref.jsonl || fail "single-process reference"
for n in 1 2 4; do
  mpi "$n" "$eva" "${train[@]}" --out dp$n.safetensors >dp$n.jsonl 2>dp$n.err || { fail "mpirun -np $n: exit $?"; cat dp$n.err; continue; }
  same ref.jsonl dp$n.jsonl || fail "data parallel on $n ranks: the losses differ from the single process"
  same_weights ref.safetensors dp$n.safetensors || fail "data parallel on $n ranks: the weights differ"
  same_weights ref.optim.safetensors dp$n.optim.safetensors || fail "data parallel on $n ranks: AdamW's moments differ"
done
grep -q '"allreduce_sent"' dp2.jsonl || fail "no all-reduce traffic in the JSON lines of 2 ranks"

# More shards than ranks (8 over 2 and 4), and MTP modules.
"$eva" "${train[@]}" --shards 8 --mtp 1 >mtp.jsonl || fail "single-process MTP"
for n in 2 4; do
  mpi "$n" "$eva" "${train[@]}" --shards 8 --mtp 1 >mtp$n.jsonl 2>/dev/null || fail "MTP on $n ranks: exit $?"
  same mtp.jsonl mtp$n.jsonl || fail "8 shards with MTP on $n ranks: the losses differ"
done

# ---------------------------------------------------------------------------- expert parallel
# case_ep N NAME REF ARGS...: mpirun -np N with ARGS equals the single-process REF (.jsonl and weights).
case_ep() {
  local n=$1 name=$2 ref=$3; shift 3
  mpi "$n" "$eva" "${train[@]}" "$@" --out "$name.safetensors" >"$name.jsonl" 2>"$name.err" || { fail "$name: exit $?: $(head -c 400 "$name.err")"; return; }
  same "$ref.jsonl" "$name.jsonl" || fail "$name: the losses differ from the single process"
  same_weights "$ref.safetensors" "$name.safetensors" || fail "$name: the weights differ"
  same_weights "$ref.optim.safetensors" "$name.optim.safetensors" || fail "$name: AdamW's moments differ"
}
case_ep 2 ep2 ref --ep 2
case_ep 4 ep4 ref --ep 4
case_ep 4 ep2dp2 ref --ep 2
"$eva" "${train[@]}" --shards 8 --mtp 1 --out mtp_ref.safetensors >mtp_ref.jsonl || fail "single-process MTP reference"
case_ep 2 ep2mtp mtp_ref --shards 8 --mtp 1 --ep 2
# The traffic adds up: what the ranks send in dispatch and combine, they receive; and rows do move.
"$py" - ep4.jsonl <<'EOF' || fail "expert parallel traffic figures"
import json, sys
for line in open(sys.argv[1]):
    j = json.loads(line)
    if 'traffic' not in j: continue
    r = j['traffic']['per_rank']
    for kind in ('dispatch', 'combine'):
        assert sum(r[kind + '_sent']) == sum(r[kind + '_received']) > 0, (kind, r)
    assert j['traffic']['ep'] == 4 and j['traffic']['tokens_per_rank'] == 32, j['traffic']
EOF

# What a rank holds: with --ep E its own experts only. Writing W for the weights of one process and X for
# the routed experts' part, a rank of --ep 2 holds W - X/2 and one of --ep 4 W - 3X/4, so
# 3(W - W2) = 2(W - W4) exactly; data-parallel ranks hold W; AdamW's moments are twice the weights.
"$py" - ref.jsonl dp2.jsonl ep2.jsonl ep4.jsonl <<'EOF' || fail "expert parallel: the training state each rank holds"
import json, sys
def state(p):
    return [json.loads(l) for l in open(p)][-1]['state_bytes']
ref, dp2, ep2, ep4 = (state(p) for p in sys.argv[1:])
assert dp2['weights'] == ref['weights'], (dp2, ref)
W, W2, W4 = ref['weights'], ep2['weights'], ep4['weights']
assert W > W2 > W4 > 0 and 3 * (W - W2) == 2 * (W - W4), (W, W2, W4)
for s in (ref, dp2, ep2, ep4):
    assert s['moments'] == 2 * s['weights'], s
EOF

# Node-limited routing: experts on 4 nodes of 1 rank, each token's on 1; a single process emulates it.
# (tiny.json's 2 groups with 1 kept already confine a token to half the experts: 2 nodes of 2 ranks
# would be that same routing.)
"$eva" "${train[@]}" --nodes 4 --max-nodes 1 --out nl_ref.safetensors >nl_ref.jsonl || fail "single-process node-limited reference"
same ref.jsonl nl_ref.jsonl 2>/dev/null && fail "--max-nodes 1 trained exactly as unlimited routing: the limit had no effect"
case_ep 4 nl4 nl_ref --ep 4 --ranks-per-node 1 --max-nodes 1
# At most M = 1 remote node per token and MoE layer (2 layers here); unlimited routing over 4 nodes uses more.
mpi 4 "$eva" "${train[@]}" --ep 4 --ranks-per-node 1 >nodes4.jsonl 2>/dev/null || fail "4 nodes, unlimited: exit $?"
"$py" - nodes4.jsonl nl4.jsonl <<'EOF' || fail "node-limited traffic figures"
import json, sys
def remote(p):
    return [max(json.loads(l)['traffic']['per_token']['remote_nodes']) for l in open(p) if '"traffic"' in l]
free, limited = remote(sys.argv[1]), remote(sys.argv[2])
assert limited and all(x <= 2 for x in limited), limited
assert max(free) > 2, free
EOF
# Layouts that do not fit end every rank with one line and status 2.
fault "--ep 3 on 2 ranks" 2 "must divide" mpirun --oversubscribe -np 2 "$eva" "${train[@]}" --ep 3
fault "--ep 2 on rank 1 only" 2 "starts from another config" \
  mpirun --oversubscribe -np 1 "$eva" "${train[@]}" : -np 1 "$eva" "${train[@]}" --ep 2
# One process given the layout (--ep without mpirun) accounts the same traffic the 4 ranks measured.
"$eva" "${train[@]}" --ep 4 --ranks-per-node 1 --max-nodes 1 >nl_emulated.jsonl || fail "emulated layout: exit $?"
same nl_ref.jsonl nl_emulated.jsonl || fail "emulated layout: the losses differ"
"$py" - nl4.jsonl nl_emulated.jsonl <<'EOF' || fail "emulated traffic differs from the measured one"
import json, sys
def figures(p):
    out = []
    for l in open(p):
        j = json.loads(l)
        if 'traffic' in j:
            r = j['traffic']['per_rank']
            out.append({k: r[k] for k in ('dispatch_sent', 'dispatch_received', 'combine_sent', 'combine_received', 'node_bytes')})
    return out
a, b = figures(sys.argv[1]), figures(sys.argv[2])
assert len(a) == 6 and a == b, (a, b)
EOF

# ------------------------------------------------------------------ resume across rank counts
mpi 4 "$eva" "${train[@]}" --stop-after 3 --out half.safetensors >/dev/null 2>&1 || fail "4 ranks, first half"
for n in 1 2; do
  cp half.safetensors h$n.safetensors && cp half.optim.safetensors h$n.optim.safetensors
  if [[ $n == 1 ]]; then
    "$eva" train --resume h1.safetensors --data text.txt --json --threads 1 --eval-every 3 --out h1.safetensors >h1.jsonl
  else
    mpi 2 "$eva" train --resume h2.safetensors --data text.txt --json --threads 1 --eval-every 3 --out h2.safetensors >h2.jsonl 2>/dev/null
  fi || fail "resume on $n ranks: exit $?"
  tail -n +4 ref.jsonl >ref_tail.jsonl  # steps 4..6 and the final line
  same ref_tail.jsonl h$n.jsonl || fail "saved on 4 ranks, resumed on $n: the losses differ from the straight run"
  same_weights ref.safetensors h$n.safetensors || fail "saved on 4 ranks, resumed on $n: the weights differ from the straight run"
done


# Expert parallel: stopped on 2 ranks with --ep 2, resumed in one process (the checkpoint knows no ep);
# node-limited: stopped on 4 ranks with --ep 4, resumed on 2 ranks, data parallel only (the routing
# keeps the saved layout of 4 nodes).
mpi 2 "$eva" "${train[@]}" --ep 2 --stop-after 3 --out eph.safetensors >/dev/null 2>&1 || fail "--ep 2, first half"
"$eva" train --resume eph.safetensors --data text.txt --json --threads 1 --eval-every 3 --out eph.safetensors >eph.jsonl || fail "--ep 2 resumed alone: exit $?"
same ref_tail.jsonl eph.jsonl || fail "saved with --ep 2, resumed on 1: the losses differ from the straight run"
same_weights ref.safetensors eph.safetensors || fail "saved with --ep 2, resumed on 1: the weights differ"
mpi 4 "$eva" "${train[@]}" --ep 4 --ranks-per-node 1 --max-nodes 1 --stop-after 3 --out nlh.safetensors >/dev/null 2>&1 || fail "node-limited, first half"
mpi 2 "$eva" train --resume nlh.safetensors --data text.txt --json --threads 1 --eval-every 3 --out nlh.safetensors >nlh.jsonl 2>/dev/null || fail "node-limited resumed on 2: exit $?"
tail -n +4 nl_ref.jsonl >nl_tail.jsonl
same nl_tail.jsonl nlh.jsonl || fail "node-limited, saved on 4 ranks, resumed on 2: the losses differ"
same_weights nl_ref.safetensors nlh.safetensors || fail "node-limited, saved on 4 ranks, resumed on 2: the weights differ"

# ----------------------------------------------------------------------------------- faults
# Rank 1 reads a file that does not exist: it fails alone, and the others are waiting for it.
fault "bad input on rank 1" 2 "eva: error: rank 1 of 2: " \
  mpirun --oversubscribe -np 1 "$eva" "${train[@]}" : -np 1 "$eva" "${train[@]}" --data missing.txt
# Rank 1 was given another seed: the ranks' starting points differ, which every rank detects.
fault "another seed on rank 1" 2 "starts from another config, corpus or model than rank 0" \
  mpirun --oversubscribe -np 1 "$eva" "${train[@]}" : -np 1 "$eva" "${train[@]}" --seed 2
# Four ranks on a shard count they cannot share.
fault "4 ranks, 2 shards" 2 "4 ranks cannot share 2 gradient shards" mpirun --oversubscribe -np 4 "$eva" "${train[@]}" --shards 2

# A killed rank: a long run saving every step; once a checkpoint exists, rank 1 is killed with SIGKILL.
# The run must end promptly, with the checkpoint a consistent pair that resumes.
mpirun --oversubscribe -np 2 "$eva" "${train[@]}" --steps 100000 --save-every 1 --out kill.safetensors >kill.jsonl 2>kill.err &
launcher=$!
for _ in $(seq 600); do [[ -f kill.optim.safetensors ]] && break; sleep 0.1; done
# (eva re-executes itself once to set its OpenMP wait policy: the ranks are found by command line.)
ranks=$(pgrep -P $launcher -f "$eva" | sort -n)
victim=$(echo "$ranks" | tail -n 1)
t0=$SECONDS
if [[ -n "$victim" ]]; then kill -9 "$victim"; else fail "killed rank: no rank process found"; fi
timeout 60 bash -c "while kill -0 $launcher 2>/dev/null; do sleep 0.1; done"
rc=$?
# A launcher still running (no rank found, or the kill did not end the run) is ended here, so the
# test fails instead of waiting for 100,000 steps.
if kill -0 $launcher 2>/dev/null; then pkill -9 -P $launcher; kill -9 $launcher; fi
wait $launcher
status=$?
[[ $rc == 0 && $((SECONDS - t0)) -lt 60 ]] || fail "killed rank: the run did not end within 60 s"
[[ $status != 0 ]] || fail "killed rank: the launcher exited 0"
for r in $ranks; do
  timeout 10 bash -c "while kill -0 $r 2>/dev/null; do sleep 0.1; done" || fail "killed rank: rank pid $r still runs"
done
grep -q "eva: error: rank 0 of 2: stopped by mpirun" kill.err || fail "killed rank: rank 0 did not say why it stopped: $(head -c 400 kill.err)"
ls kill*.tmp* >/dev/null 2>&1 && fail "killed rank: a temporary checkpoint file was left behind"
"$eva" train --resume kill.safetensors --data text.txt --json --threads 1 --steps 100000 --stop-after 1 --out kill.safetensors \
  >/dev/null 2>resume.err || fail "killed rank: the checkpoint does not resume: $(cat resume.err)"

echo "cli_mpi: $failures failures"
[[ $failures == 0 ]]
