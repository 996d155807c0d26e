#!/usr/bin/env bash
# End-to-end: the `tessera` verbs as a user runs them.
# Usage: cli_test.sh TESSERA_BINARY SOURCE_DIR
set -u
tessera=$1
src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
check() {  # check DESCRIPTION EXPECTED_EXIT PATTERN -- COMMAND...
  local what=$1 want=$2 pattern=$3
  shift 4
  local out rc
  out=$("$@" 2>&1); rc=$?
  if [ "$rc" != "$want" ] || ! grep -qE -- "$pattern" <<<"$out"; then
    echo "FAIL: $what (exit $rc, wanted $want; pattern '$pattern')"
    echo "$out" | head -20
    fail=1
  else
    echo "ok: $what"
  fi
}

check "list shows every preset" 0 "maia100-class .* h200-sxm|h200-sxm" -- "$tessera" arch list
check "show prints parameters" 0 "chip.tile.systolic.rows +64" -- "$tessera" arch show maia100-class
check "show prints derived figures" 0 "peak_flops.bf16 +802" -- "$tessera" arch show maia100-class
check "show --json has derived.peak_flops" 0 '"peak_flops"' -- "$tessera" arch show h100-sxm --json
check "override changes a value" 0 '"clock": 2000000000' -- "$tessera" arch show maia100-class -s chip.clock=2GHz --json
check "schema documents keys with units" 0 "hbm.timing.tRCD +quantity \(s\)" -- "$tessera" arch schema
check "diff lists changes" 0 "hbm.stacks +5 +6" -- "$tessera" arch diff h100-sxm h200-sxm
check "every preset validates" 0 "ok" -- "$tessera" arch validate "$src"/arch/presets/*.yaml
check "help on a verb" 0 "--set" -- "$tessera" arch show --help

printf 'extends: maia100-class\nchip:\n  clock: 1.5GB\n' > "$tmp/bad.yaml"
check "validate rejects bad units with file:line and key" 1 "bad.yaml:3:.*chip.clock: unknown unit 'GB'" -- "$tessera" arch validate "$tmp/bad.yaml"
check "show rejects unknown override key" 1 "chip.clok: unknown key" -- "$tessera" arch show maia100-class -s chip.clok=1GHz
check "unknown preset is an error" 1 "no such preset or file" -- "$tessera" arch show maia200
check "unknown verb is a usage error" 106 "subcommand" -- "$tessera" arch frobnicate
# isa verbs
example="$src/isa/examples/gemm_4tile.tasm"
check "asm writes a binary" 0 "" -- "$tessera" asm "$example" -o "$tmp/g.tbin"
check "disasm prints canonical text" 0 "matmul acc=sram\[acc_t0\]" -- "$tessera" disasm "$tmp/g.tbin"
check "verify accepts the example on maia100-class" 0 "ok for maia100-class" -- "$tessera" verify --arch maia100-class "$example"
check "verify rejects it on a chip with too little SRAM" 1 "outside the SRAM" -- "$tessera" verify --arch maia100-class -s chip.tile.sram.capacity=128KiB "$tmp/g.tbin"
check "isa doc lists matmul" 0 "### \`matmul\`" -- "$tessera" isa doc
printf '.stream tile=0\n  frob 1\n' > "$tmp/bad.tasm"
check "asm errors name file:line:column" 1 "bad.tasm:2:3: unknown instruction 'frob'" -- "$tessera" asm "$tmp/bad.tasm" -o "$tmp/bad.tbin"
printf 'TSRAPROG garbage' > "$tmp/bad.tbin"
check "disasm rejects a corrupt binary" 1 "bad.tbin" -- "$tessera" disasm "$tmp/bad.tbin"
exit $fail
