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
printf '.region buf io 0x0 0x10000\n.stream chip=0 tile=0\n  send src=hbm[0x0], bytes=65536, peer=1, tag=1\n.stream chip=1 tile=3\n  recv dst=hbm[0x0], bytes=65536, peer=0, tag=1\n' > "$tmp/two.tasm"
two=(-s system.chips=2 -s system.topology=fully_connected -s system.link.count=1)
check "sim runs a program on two chips" 0 "sent between chips 0.066 MB" -- "$tessera" sim --arch maia100-class "${two[@]}" "$tmp/two.tasm"
sed '/recv/d' "$tmp/two.tasm" > "$tmp/lost.tasm"
check "sim names both ends of a message nobody receives" 1 "chip 0 tile 0 sent 65536 bytes to chip 1 with tag 1" -- "$tessera" sim --arch maia100-class "${two[@]}" "$tmp/lost.tasm"
printf 'TSRAPROG garbage' > "$tmp/bad.tbin"
check "disasm rejects a corrupt binary" 1 "bad.tbin" -- "$tessera" disasm "$tmp/bad.tbin"
# compile verbs, on a tiny Llama (2 layers, hidden 64, 4 heads, 2 KV heads, vocabulary 256)
tiny="$tmp/tiny-llama.json"
cat > "$tiny" <<'JSON'
{"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
 "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 256, "rms_norm_eps": 1e-5,
 "max_position_embeddings": 64}
JSON
decode=(--arch maia100-class --model "$tiny" --phase decode --batch 2 --context 8)
check "compile --emit graph shows fused ops" 0 "swiglu l0.gate_mul\(%l0.gate_proj\+l0.up_proj\) : bf16 \[16, 128\]" -- \
  "$tessera" compile --arch maia100-class --model "$tiny" --phase prefill --batch 2 --seq 8 --emit graph
check "compile --emit tiled shows the plan" 0 "tiles: 1 columns a tile, weight chunks of 1 x 64, 3 buffers" -- \
  "$tessera" compile "${decode[@]}" --emit tiled
check "compile --emit asm prints assembly" 0 "^\.stream chip=0 tile=63" -- "$tessera" compile "${decode[@]}" --emit asm
check "compile reports the layer loop" 0 "2 layers in a loop" -- "$tessera" compile "${decode[@]}" --emit asm -o "$tmp/tiny.tasm"
check "compile --emit tiled -o writes the file" 0 "" -- "$tessera" compile "${decode[@]}" --emit tiled -o "$tmp/tiny.tiled"
check "the tiled file has the plan" 0 "strategy: heads" -- cat "$tmp/tiny.tiled"
check "compile --emit bin -o writes a binary" 0 "" -- "$tessera" compile "${decode[@]}" --emit bin -o "$tmp/tiny.tbin"
check "the binary starts with the magic" 0 "^TSRAPROG" -- head -c 8 "$tmp/tiny.tbin"
check "disasm of the binary" 0 "" -- "$tessera" disasm "$tmp/tiny.tbin" -o "$tmp/tiny_dis.tasm"
check "the binary disassembles to --emit asm's text" 0 "" -- diff "$tmp/tiny.tasm" "$tmp/tiny_dis.tasm"
check "the assembly reassembles" 0 "" -- "$tessera" asm "$tmp/tiny.tasm" -o "$tmp/tiny_re.tbin"
check "... to the same program" 0 "" -- diff <("$tessera" disasm "$tmp/tiny_re.tbin") "$tmp/tiny.tasm"
check "verify accepts the compiled binary" 0 "ok for maia100-class" -- "$tessera" verify --arch maia100-class "$tmp/tiny.tbin"
check "sim runs the compiled binary" 0 "tiny.tbin on maia100-class: [0-9.]+ us simulated" -- \
  "$tessera" sim --arch maia100-class "$tmp/tiny.tbin"
check "sim runs it functionally" 0 "us simulated" -- "$tessera" sim --arch maia100-class --functional "$tmp/tiny.tbin"
check "compile of a shipped model by name" 0 "^graph llama-3-8b" -- \
  "$tessera" compile --arch maia100-class --model llama-3-8b --phase decode --context 128 --emit graph
check "--emit bin without -o is an error" 1 "--emit bin needs -o" -- "$tessera" compile "${decode[@]}" --emit bin
check "an unknown model is an error naming the shipped ones" 1 "no model 'llama-9'.*llama-3-8b" -- \
  "$tessera" compile --arch maia100-class --model llama-9 --phase decode --context 8
printf '{"model_type": "llama", "num_hidden_layers": 2}\n' > "$tmp/bad-config.json"
check "a config without a key is an error naming file and key" 1 "bad-config.json: missing key 'hidden_size'" -- \
  "$tessera" compile --arch maia100-class --model "$tmp/bad-config.json" --phase decode --context 8
check "a model larger than HBM is an error saying what fits" 1 "llama-2-70b needs .* GB of HBM.*3 chips" -- \
  "$tessera" compile --arch maia100-class --model llama-2-70b --phase decode --context 8 --emit graph
check "an unknown --emit is a usage error" 105 "--emit" -- "$tessera" compile "${decode[@]}" --emit llvm
check "an unknown dtype is an error" 1 "int3" -- "$tessera" compile "${decode[@]}" --dtype int3
check "compile --help lists --emit" 0 "--emit" -- "$tessera" compile --help

# run and compare: a small Llama keeps these quick.
cat > "$tmp/small.json" <<'JSON'
{"model_type": "llama", "hidden_size": 512, "intermediate_size": 1408, "num_hidden_layers": 4,
 "num_attention_heads": 8, "num_key_value_heads": 4, "vocab_size": 4096, "max_position_embeddings": 2048}
JSON
small=(--model "$tmp/small.json" --phase decode --batch 8 --context 256)
check "run prints the report" 0 "tokens/s .*cost per million tokens|bound by" -- "$tessera" run --arch maia100-class "${small[@]}"
check "run --json has the report's keys" 0 '"usd_per_million_tokens"' -- "$tessera" run --arch maia100-class "${small[@]}" --json
check "run --json has stats" 0 '"system.chip0.hbm.read_bytes"' -- "$tessera" run --arch maia100-class "${small[@]}" --json
check "run an operator" 0 "throughput" -- "$tessera" run --arch h100-sxm --op gemm --shape 512,512,512
check "run plain PyTorch's kernels, launched eagerly" 0 "\(pytorch\)" -- \
  "$tessera" run --arch h100-sxm "${small[@]}" --framework pytorch --launch eager
check "--breakdown shows the time a power limit adds" 0 "power_throttle .* power" -- \
  "$tessera" run --arch h100-sxm --op gemm --shape 4096,4096,4096 -s power.limit_window=0s --breakdown
check "a GEMM called alone runs above the TDP within the power limit's window, and says so" 0 \
  "exceeds the TDP of 700 W: starting from idle.*power.limit_window \\(2 ms\\)" -- \
  "$tessera" run --arch h100-sxm --op gemm --shape 4096,4096,4096
check "an unknown --launch is a usage error" 105 "--launch: lazy not in" -- \
  "$tessera" run --arch h100-sxm --op gemm --shape 512,512,512 --launch lazy
check "run writes a trace" 0 "" -- "$tessera" run --arch maia100-class "${small[@]}" --trace "$tmp/run_trace.json"
check "the trace is Chrome trace JSON" 0 "traceEvents" -- head -c 200 "$tmp/run_trace.json"
check "compare prints ratios to the first system" 0 "h100-sxm .*x" -- "$tessera" compare --systems maia100-class,h100-sxm "${small[@]}"
check "compare --csv" 0 "^workload,system,chips,latency" -- "$tessera" compare --systems maia100-class,h100-sxm "${small[@]}" --csv
check "compare writes a report" 0 "" -- "$tessera" compare --systems maia100-class,h100-sxm "${small[@]}" --report "$tmp/report.json"
check "the report has ratios" 0 '"vs_first"' -- cat "$tmp/report.json"
check "run needs a workload" 1 "nothing to run" -- "$tessera" run --arch maia100-class
check "decode needs a context" 1 "decode needs context.*--context" -- "$tessera" run --arch maia100-class --model "$tmp/small.json" --phase decode --batch 1 --seq 8
check "prefill needs a prompt" 1 "prefill needs seq.*--seq" -- "$tessera" run --arch maia100-class --model "$tmp/small.json" --phase prefill --batch 1 --context 8
check "a zero batch is an error" 1 "batch must be at least 1" -- "$tessera" run --arch maia100-class --model "$tmp/small.json" --phase prefill --batch 0 --seq 8
check "a copy larger than HBM is an error, not a hang" 1 "HBM exhausted: region 'src'" -- "$tessera" run --arch maia100-class --op copy --shape 99999999999999
check "a bad shape is an error" 1 "--shape" -- "$tessera" run --arch maia100-class --op gemm --shape 1,x,3
check "--chips splits the model over a system's chips" 0 '"chips": 2' -- "$tessera" run --arch maia100-class "${small[@]}" --chips 2 --json
check "a model that does not split evenly is an error saying why" 1 "8 attention heads do not split evenly over 3 chips" -- \
  "$tessera" run --arch maia100-class "${small[@]}" --chips 3 --tp 3
check "with the mapping open, a search finds one that splits" 0 '"pp": 3' -- \
  "$tessera" run --arch maia100-class "${small[@]}" --chips 3 --json
check "--tp and --pp that do not make the system's chips are an error" 1 \
  "system.parallelism.tp: tp 2 x pp 2 = 4 chips, not the system's 8" -- \
  "$tessera" run --arch hgx-h100x8 "${small[@]}" --tp 2 --pp 2
check "compile of a pipeline needs the stage" 1 "a pipeline of 2 stages: --stage 0 .. 1" -- \
  "$tessera" compile --arch maia100-class -s system.chips=2 --pp 2 "${small[@]}"
check "compile --stage emits that stage's program" 0 "pipeline_stage = 1 of 2 \(layers 2-3\)" -- \
  "$tessera" compile --arch maia100-class -s system.chips=2 --pp 2 --stage 1 --emit graph "${small[@]}"
check "--pp shows the pipeline in the report" 0 "tp 1 x pp 2, 2 microbatches" -- \
  "$tessera" run --arch maia100-class "${small[@]}" --chips 2 --pp 2
cat > "$tmp/moe.json" <<'JSON'
{"model_type": "mixtral", "hidden_size": 512, "intermediate_size": 1024, "num_hidden_layers": 2,
 "num_attention_heads": 8, "num_key_value_heads": 4, "vocab_size": 4096, "max_position_embeddings": 2048,
 "num_local_experts": 4, "num_experts_per_tok": 2}
JSON
moe=(--model "$tmp/moe.json" --phase decode --batch 8 --context 256)
check "--ep deals the experts over groups of chips" 0 "experts 0\.\.1 of 4" -- \
  "$tessera" compile --arch maia100-class -s system.chips=2 --ep 2 --emit tiled "${moe[@]}"
check "--capacity-factor caps an expert's tokens" 0 "at most 4 tokens an expert per block \(capacity factor 1\)" -- \
  "$tessera" compile --arch maia100-class --capacity-factor 1 --emit tiled "${moe[@]}"
check "--ep and a routing skew run" 0 "tp 2 x pp 1" -- \
  "$tessera" run --arch maia100-class --chips 2 --tp 2 --ep 2 --routing-skew 1.2 --routing-seed 5 "${moe[@]}"
check "an ep that does not divide a stage's chips is an error" 1 \
  "system.parallelism.ep: ep 3 does not divide the 8 chips of a pipeline stage" -- \
  "$tessera" run --arch hgx-h100x8 "${moe[@]}" --tp 8 --ep 3
check "ep on a model without experts is an error" 1 "has no experts to split \(ep 2\)" -- \
  "$tessera" run --arch maia100-class --chips 2 --tp 2 --ep 2 "${small[@]}"
check "a power limit below a step's power stretches it" 0 "power-throttled .* of it" -- \
  "$tessera" run --arch h100-sxm --op gemm --shape 2048,2048,2048 -s power.limit=250W -s power.limit_window=0s
check "a power limit below the static power is an error" 1 "power.limit: a power limit \(50W\) must be above" -- \
  "$tessera" run --arch h100-sxm --op gemm --shape 64,64,64 -s power.limit=50W
check "an operator on several chips is refused" 1 "an operator runs on one" -- "$tessera" run --arch hgx-h100x8 --op gemm --shape 64,64,64
check "cloud pricing needs a cloud price" 1 "cloud_price" -- "$tessera" run --arch maia100-class "${small[@]}" --pricing cloud
check "compare with an unknown system is an error" 1 "no such preset or file" -- "$tessera" compare --systems maia100-class,gpu9000 "${small[@]}"
check "compare of no systems is an error" 1 "compare: no systems given" -- "$tessera" compare --systems , --json
# A run that fails is a row with its error; the others still run; exit 1 after the whole table.
# Llama-3-70B's 141 GB of bf16 weights fit neither maia100-class (64 GB) nor tpu-v4-class (32 GiB).
big=(compare --systems maia100-class,tpu-v4-class --model llama-3-70b --phase decode --batch 1 --context 128)
check "compare prints a failed run's row" 1 "maia100-class +failed: llama-3-70b needs [0-9.]+ GB of HBM .* but maia100-class has 64.00 GB" -- "$tessera" "${big[@]}"
check "... and the rows after it" 1 "tpu-v4-class +failed: llama-3-70b needs [0-9.]+ GB of HBM .* but tpu-v4-class has 34.36 GB" -- "$tessera" "${big[@]}"
check "compare --json gives each failed run's error" 1 '"error": "llama-3-70b needs .* but tpu-v4-class has' -- "$tessera" "${big[@]}" --json
printf 'name: maia-16mib\nextends: maia100-class\nhbm:\n  capacity: 16MiB\n' > "$tmp/16mib.yaml"
tiny_hbm=(compare --systems "$tmp/16mib.yaml",maia100-class "${small[@]}")
check "a run after a failed first system has figures and no ratios" 1 "maia100-class +1 +[0-9.]+ us +[0-9.]+ +- " -- "$tessera" "${tiny_hbm[@]}"
check "compare --csv puts the error in a last column" 1 ',maia-16mib,+"small needs .* GB of HBM' -- "$tessera" "${tiny_hbm[@]}" --csv
check "compare --report writes the failed run" 1 "" -- "$tessera" "${tiny_hbm[@]}" --report "$tmp/failed.json"
check "... with its error" 0 '"error": "small needs' -- cat "$tmp/failed.json"
check "a mistake in the request still fails before any run" 1 "^error: dtype: unknown dtype 'int3'$" -- "$tessera" "${tiny_hbm[@]}" --dtype int3

# serve: request traffic on a replica (a 2-layer Llama, a few short requests and a small token
# budget keep it quick: the largest whole-model step simulated is the budget's).
cat > "$tmp/tiny.json" <<'JSON'
{"model_type": "llama", "hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 2,
 "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 4096, "max_position_embeddings": 2048}
JSON
printf 'TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.6805900,174,14\n2023-11-16 18:15:50.9951690,96,9\n2023-11-16 18:15:51.4405350,279,4\n' > "$tmp/trace.csv"
serve=(serve --arch tpu-v4-class --model "$tmp/tiny.json" --max-batched-tokens 512)
check "serve replays a trace and writes a timeline" 0 "traffic +3 requests over" -- \
  "$tessera" "${serve[@]}" --requests "$tmp/trace.csv" --slo ttft=1s,tpot=100ms --trace "$tmp/serve_trace.json"
check "... of iterations and queue depth" 0 '"name":"queue"' -- cat "$tmp/serve_trace.json"
check "serve --json has every request's times" 0 '"request_results"' -- "$tessera" "${serve[@]}" --requests "$tmp/trace.csv" --json
check "serve synthetic traffic on two replicas" 0 "2 replicas of 1 chip" -- \
  "$tessera" "${serve[@]}" --synthetic rate=5,prompt=64,output=uniform:2:8,count=6,seed=2 --replicas 2
check "serve needs traffic" 1 "give a trace or synthetic traffic" -- "$tessera" "${serve[@]}"
check "serve names a bad trace's line" 1 "trace.bad.csv:3" -- sh -c "printf 'TIMESTAMP,ContextTokens,GeneratedTokens\n1,5,5\n2,x,5\n' > $tmp/trace.bad.csv; \"$tessera\" serve --arch tpu-v4-class --model $tmp/tiny.json --requests $tmp/trace.bad.csv"
check "serve with an empty window is an error" 1 "no requests arrive in the window" -- \
  "$tessera" "${serve[@]}" --requests "$tmp/trace.csv" --from 3600
check "serve names a bad SLO key" 1 "--slo itl: unknown target" -- "$tessera" "${serve[@]}" --requests "$tmp/trace.csv" --slo itl=5ms
check "serve of a model larger than HBM says what fits" 1 "llama-3-70b needs [0-9.]+ GB of HBM" -- \
  "$tessera" serve --arch maia100-class --model llama-3-70b --requests "$tmp/trace.csv"
check "serve disaggregated pools moves KV caches" 0 "KV transfers" -- \
  "$tessera" "${serve[@]}" --requests "$tmp/trace.csv" --disaggregate 1:1 --grid 1
check "serve --disaggregate needs P:D" 1 "--disaggregate 2: expected P:D" -- \
  "$tessera" "${serve[@]}" --requests "$tmp/trace.csv" --disaggregate 2
check "serve reports prompt tokens found in the prefix cache" 0 "prefix cache .* found cached" -- \
  "$tessera" "${serve[@]}" --synthetic rate=2,prompt=256,output=4,count=4,arrivals=gamma,cv=0.01 \
  --prefix-sharing fraction=0.5,groups=1
check "serve names a bad prefix-sharing key" 1 "--prefix-sharing share: unknown key" -- \
  "$tessera" "${serve[@]}" --requests "$tmp/trace.csv" --prefix-sharing share=0.5
check "serve --plan finds the cheapest system" 0 "cheapest at 1x \\(owned\\): (tpu-v4-class|maia100-class)" -- \
  "$tessera" serve --plan --systems tpu-v4-class,maia100-class --model "$tmp/tiny.json" --max-batched-tokens 512 \
  --requests "$tmp/trace.csv" --slo ttft=1s,tpot=100ms --requests-per-user-month 300 --grid 1 --no-disaggregation
check "serve --plan needs an SLO" 1 "give an SLO to plan for" -- \
  "$tessera" serve --plan --systems maia100-class --model "$tmp/tiny.json" --requests "$tmp/trace.csv"
check "serve --plan takes systems, not an arch" 1 "takes --systems, not --arch" -- \
  "$tessera" "${serve[@]}" --plan --systems maia100-class --requests "$tmp/trace.csv" --slo ttft=1s
exit $fail
