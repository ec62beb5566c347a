# Shared by the bench/*.sh scripts: paths, the build of the bench targets, machine info.
# Source it; it sets KILN_REPO, KILN_BUILD, KILND, LOADGEN, KILND_NULL, RESULTS.
set -euo pipefail
KILN_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KILN_BUILD="${KILN_BUILD:-$KILN_REPO/build-bench}"
RESULTS="${KILN_BENCH_RESULTS:-$KILN_REPO/bench/results}"
KILND="${KILND:-$KILN_BUILD/server/kilnd}"
LOADGEN="${LOADGEN:-$KILN_BUILD/bench/kiln_loadgen}"
KILND_NULL="${KILND_NULL:-$KILN_BUILD/bench/kilnd_null}"

# Builds what is missing (set KILN_BENCH_NO_BUILD=1 to use prebuilt binaries as given).
kiln_bench_build() {
  if [[ "${KILN_BENCH_NO_BUILD:-0}" == 1 ]]; then return; fi
  if [[ ! -f "$KILN_BUILD/build.ninja" ]]; then
    cmake -S "$KILN_REPO" -B "$KILN_BUILD" -G Ninja -DKILN_CUDA=OFF \
      -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  fi
  ninja -C "$KILN_BUILD" -j"${KILN_BENCH_JOBS:-2}" "$@"
}

kiln_bench_stamp() { date -u +%Y%m%d-%H%M%S; }
kiln_bench_load() { cut -d' ' -f1 /proc/loadavg; }
