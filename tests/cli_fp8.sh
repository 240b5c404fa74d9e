#!/usr/bin/env bash
# `eva fp8` end to end: outputs against values from the OFP8 spec, and every kind of bad input giving one
# line on stderr, exit status 2 and nothing written. Usage: tests/cli_fp8.sh path/to/eva
set -uo pipefail
eva=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# expect_ok NAME EXPECTED_STDOUT COMMAND... (stdin from $input)
expect_ok() {
  local name=$1 want=$2; shift 2
  local got; got=$(printf '%b' "$input" | "$@" 2>"$dir/err") || { fail "$name: exit $?: $(cat "$dir/err")"; return; }
  [[ "$got" == "$want" ]] || fail "$name: got [$got] want [$want]"
}
# expect_error NAME STDERR_SUBSTRING COMMAND... : exit 2, one stderr line containing the substring, no stdout
expect_error() {
  local name=$1 want=$2; shift 2
  printf '%b' "$input" | "$@" >"$dir/out" 2>"$dir/err"
  local rc=$?
  [[ $rc == 2 ]] || fail "$name: exit $rc, want 2"
  [[ ! -s "$dir/out" ]] || fail "$name: wrote to stdout: $(head -c 100 "$dir/out")"
  [[ $(wc -l <"$dir/err") == 1 ]] || fail "$name: stderr is not one line: $(cat "$dir/err")"
  grep -qF -- "$want" "$dir/err" || fail "$name: stderr [$(cat "$dir/err")] lacks [$want]"
}

# A float32 .npy with shape $2 and $3 raw data bytes, header padded to 80 bytes (npy format 1.0).
write_npy() {
  local header="{'descr': '<f4', 'fortran_order': False, 'shape': $2, }"
  while (( ${#header} < 80 - 10 - 1 )); do header+=' '; done
  { printf '\x93NUMPY\x01\x00\x46\x00'; printf '%s\n' "$header"; head -c "$3" /dev/zero; } >"$1"
}

# --- table, encode, decode: values from the spec
input=''
[[ $("$eva" fp8 table --format e4m3 | wc -l) == 256 ]] || fail "table: not 256 lines"
[[ $("$eva" fp8 table --format e4m3 | sed -n '127p') == '0x7E 448' ]] || fail "table e4m3 0x7E"
[[ $("$eva" fp8 table --format e5m2 | sed -n '2p;125p') == $'0x01 1.52587890625e-05\n0x7C inf' ]] || fail "table e5m2"
input='448\n464\n464.0001\n-inf\n0x3F800000\n-0\n0.001953125\nnan\n'
expect_ok "encode e4m3" $'0x7E\n0x7E\n0x7F\n0xFF\n0x38\n0x80\n0x01\n0x7F' "$eva" fp8 encode --format e4m3
expect_ok "encode e4m3 saturating" $'0x7E\n0x7E\n0x7E\n0xFE\n0x38\n0x80\n0x01\n0x7F' "$eva" fp8 encode --format e4m3 --saturate
input='57344\n61440\n1e30\n'
expect_ok "encode e5m2" $'0x7B\n0x7C\n0x7C' "$eva" fp8 encode --format e5m2
expect_ok "encode e5m2 saturating" $'0x7B\n0x7B\n0x7B' "$eva" fp8 encode --format e5m2 --saturate
input='0x7E\n0xfe\n0x08\n0x7f\n'
expect_ok "decode e4m3" $'448\n-448\n0.015625\nnan' "$eva" fp8 decode --format e4m3

# --- bad input
input='1\n2\nabc\n'
expect_error "encode malformed line" "line 3" "$eva" fp8 encode
input='1\n\n2\n'
expect_error "encode empty line" "line 2" "$eva" fp8 encode
input='0x3F80000\n'
expect_error "encode short hex" "line 1" "$eva" fp8 encode
input='0x7E\n0x100\n'
expect_error "decode bad code" "line 2" "$eva" fp8 decode
input=''
expect_error "unknown format" "e4m3, e5m2" "$eva" fp8 table --format e3m4

# 1, 2, −0.5, 0, 0.25, 3 (little-endian float32): with power-of-two scales (2^-7 and 2^-6 here) every
# one is exactly representable, so the dequantized data must equal the input bytes.
data='\x00\x00\x80\x3f\x00\x00\x00\x40\x00\x00\x00\xbf\x00\x00\x00\x00\x00\x00\x80\x3e\x00\x00\x40\x40'
write_npy "$dir/x.npy" '(2, 3)' 0
printf "$data" >>"$dir/x.npy"
"$eva" fp8 quantize --pow2-scales --input "$dir/x.npy" --output "$dir/y.npy" >/dev/null || fail "quantize valid file"
cmp -s <(printf "$data") <(tail -c 24 "$dir/y.npy") || fail "quantize: exact values did not come back exactly"
write_npy "$dir/short.npy" '(2, 3)' 20
expect_error "truncated npy" "bytes" "$eva" fp8 quantize --input "$dir/short.npy" --output "$dir/o1.npy"
write_npy "$dir/r3.npy" '(1, 2, 3)' 24
expect_error "rank 3" "rank 3" "$eva" fp8 quantize --input "$dir/r3.npy" --output "$dir/o2.npy"
sed 's/<f4/<i4/' "$dir/x.npy" >"$dir/i4.npy"
expect_error "int32" "float32" "$eva" fp8 quantize --input "$dir/i4.npy" --output "$dir/o3.npy"
# float64 is read (and rounded to float32), but its data must then be 8 bytes per element
sed 's/<f4/<f8/' "$dir/x.npy" >"$dir/f8.npy"
expect_error "float64 data length" "needs 48 data bytes, the file holds 24" "$eva" fp8 quantize --input "$dir/f8.npy" --output "$dir/o6.npy"
echo junk >"$dir/junk.npy"
expect_error "corrupt npy" "not a valid .npy" "$eva" fp8 quantize --input "$dir/junk.npy" --output "$dir/o4.npy"
expect_error "missing npy" "cannot open" "$eva" fp8 quantize --input "$dir/none.npy" --output "$dir/o5.npy"
ls "$dir"/o*.npy* >/dev/null 2>&1 && fail "an output file was written on error: $(ls "$dir"/o*)"
expect_error "gemm-error never with tiles" "promote_every" "$eva" fp8 gemm-error --k 256 --granularity deepseek --promote-every 0

(( failures == 0 )) && echo "cli_fp8: all checks passed"
exit $(( failures > 0 ))
