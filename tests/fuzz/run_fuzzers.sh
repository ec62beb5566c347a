#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (-DKILN_FUZZ=ON, ASan+UBSan) and runs each for a
# bounded time, seeded with its committed corpus (tests/fuzz/corpus/<target>/).
#
#   tests/fuzz/run_fuzzers.sh [seconds-per-target (60)] [target ...]
#
# Env: KILN_FUZZ_BUILD (build dir, default <repo>/build-fuzz), JOBS (ninja -j, default 2),
#      PARALLEL (fuzzers run at once, default 1), CXX (default clang++-14).
# Output: <build>/fuzz-work/<target>/{log,corpus/,crash-*,leak-*,timeout-*,oom-*} and a
# summary table (execs, coverage, features, findings) on stdout and in <build>/fuzz-work/summary.
# Findings: copy the artifact to tests/fuzz/corpus/<target>/regress-<what>, fix, add a unit test.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
secs="${1:-60}"; shift || true
build="${KILN_FUZZ_BUILD:-$repo/build-fuzz}"
cxx="${CXX:-clang++-14}"
cc="${CC:-clang-14}"
all=(safetensors_header_fuzz checkpoint_index_fuzz json_util_fuzz model_name_fuzz
     model_config_fuzz generation_config_fuzz tokenizer_json_fuzz tokenizer_encode_fuzz
     sampling_params_fuzz detok_stop_fuzz)
targets=("$@"); [[ ${#targets[@]} -gt 0 ]] || targets=("${all[@]}")

san="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
cmake -S "$repo" -B "$build" -G Ninja -DKILN_CUDA=OFF -DKILN_FUZZ=ON \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER="$cc" -DCMAKE_CXX_COMPILER="$cxx" \
  -DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_FLAGS="$san" -DCMAKE_CXX_FLAGS="$san" >/dev/null
ninja -C "$build" -j"${JOBS:-2}" "${targets[@]}"

work="$build/fuzz-work"
mkdir -p "$work"
export ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:abort_on_error=0:allocator_may_return_null=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
run_one() {
  local t="$1" d="$work/$1"
  mkdir -p "$d/corpus" "$d/previous"
  # Findings of earlier runs move aside so the summary lists this run's only.
  find "$d" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' \
    -o -name 'oom-*' -o -name 'slow-unit-*' \) -exec mv -t "$d/previous" {} +
  # -rss_limit_mb/-malloc_limit_mb: parsers must reject huge sizes before allocating.
  "$build/tests/fuzz/$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
    -malloc_limit_mb=1024 -max_len=65536 -print_final_stats=1 -artifact_prefix="$d/" \
    "$d/corpus" "$repo/tests/fuzz/corpus/$t" >"$d/log" 2>&1 || true
}
running=0
for t in "${targets[@]}"; do
  run_one "$t" &
  running=$((running + 1))
  if [[ $running -ge ${PARALLEL:-1} ]]; then wait -n || true; running=$((running - 1)); fi
done
wait || true

{
  printf '%-26s %12s %8s %8s %s\n' target execs cov ft findings
  for t in "${targets[@]}"; do
    d="$work/$t"
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$d/log" | grep -o '[0-9]*$' || echo '?')
    last=$(grep -E '^#[0-9]+' "$d/log" | tail -1)
    cov=$(sed -n 's/.*cov: \([0-9]*\).*/\1/p' <<<"$last"); ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
    finds=$(cd "$d" && ls crash-* leak-* timeout-* oom-* slow-unit-* 2>/dev/null | tr '\n' ' ' || true)
    printf '%-26s %12s %8s %8s %s\n' "$t" "${execs:-?}" "${cov:-?}" "${ft:-?}" "${finds:-none}"
  done
} | tee "$work/summary"
