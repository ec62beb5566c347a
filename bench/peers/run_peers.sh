#!/usr/bin/env bash
# kiln vs transformers generate (eager dynamic cache and static cache), batch 1 and batched,
# same ~100M-parameter random Llama, same machine, one run. Writes
# bench/results/<stamp>-peers.{json,md} and prints the kiln/peer ratios.
#
#   bench/peers/run_peers.sh [peers.py all flags, e.g. --prompt_len=128 --output_len=64 --batched=32]
#
# Python: $KILN_BENCH_PYTHON if set (e.g. the tools/fixtures venv), else a venv built from
# PyPI with the pinned versions in requirements.txt under $KILN_BUILD/peers-venv.
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
kiln_bench_build kilnd kiln_loadgen
PY="${KILN_BENCH_PYTHON:-}"
if [[ -z "$PY" ]]; then
  VENV="$KILN_BUILD/peers-venv"
  if [[ ! -x "$VENV/bin/python" ]]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet -r "$KILN_REPO/bench/peers/requirements.txt"
  fi
  PY="$VENV/bin/python"
fi
exec "$PY" "$KILN_REPO/bench/peers/peers.py" all --kilnd="$KILND" --loadgen="$LOADGEN" \
  --results="$RESULTS" --command="bench/peers/run_peers.sh $*" "$@"
