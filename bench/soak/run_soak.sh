#!/usr/bin/env bash
# The soak test (issue #10, reliability.md §7 D1/D6, criteria G1-G6) against the real kilnd:
#   bench/soak/run_soak.sh [duration_s] [extra kiln_soak flags...]
# Builds nothing: it runs $KILN_SOAK (default build/bench/soak/kiln_soak) against $KILND
# (default build/server/kilnd) at low priority with 2 client threads by default, and writes
# bench/results/soak-<UTC date>.{json,md}. Exit status: kiln_soak's (0 pass, 1 fail, 2 error).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
duration="${1:-1800}"
shift || true
build="${KILN_BUILD:-$repo/build}"
kilnd="${KILND:-$build/server/kilnd}"
soak="${KILN_SOAK:-$build/bench/soak/kiln_soak}"
results="${KILN_BENCH_RESULTS:-$repo/bench/results}"
for f in "$kilnd" "$soak"; do
  [[ -x "$f" ]] || { echo "run_soak.sh: $f is missing (build kilnd and kiln_soak first)" >&2; exit 2; }
done
stamp="$(date -u +%Y%m%d-%H%M%S)"
json="$results/soak-$stamp.json"
md="$results/soak-$stamp.md"
mkdir -p "$results"
args=(--kilnd="$kilnd" --duration_s="$duration" --threads="${KILN_SOAK_THREADS:-2}"
      --seed="${KILN_SOAK_SEED:-1}" --json_out="$json" "$@")
load_start="$(cut -d' ' -f1 /proc/loadavg)"
set +e
out="$(nice -n 10 "$soak" "${args[@]}" 2>&1)"
rc=$?
set -e
load_end="$(cut -d' ' -f1 /proc/loadavg)"
{
  echo "# kiln soak — $stamp"
  echo
  echo "- command: \`$(basename "$soak") ${args[*]}\` (nice -n 10)"
  echo "- commit: $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "- machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
  echo "- load average (1 min): $load_start at start, $load_end at end"
  echo "- exit status: $rc (0 pass, 1 a criterion failed, 2 could not run); details: $(basename "$json")"
  echo
  echo '```'
  echo "$out"
  echo '```'
} >"$md"
echo "$out"
echo "run_soak.sh: wrote $md and $json"
exit $rc
