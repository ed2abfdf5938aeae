#!/usr/bin/env bash
# Runs every built libFuzzer target for the given seconds, starting from its committed
# corpus (never writing into it). New findings land in a scratch directory; a crash stops
# the run with the reproducer path: commit it into the target's corpus with the fix.
set -euo pipefail
build=${1:-build-fuzz}
seconds=${2:-60}
root=$(cd "$(dirname "$0")/.." && pwd)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
found=0
for fuzzer in $(find "$build" -type f -perm -u+x -name '*_fuzz' | sort); do
  stem=$(basename "$fuzzer" _fuzz)
  corpus=$(find "$root/src" -type d -name "${stem}_corpus" | head -1)
  [ -n "$corpus" ] || { echo "no corpus for $fuzzer" >&2; exit 1; }
  mkdir -p "$scratch/$stem"
  # Inputs up to the real limits, not libFuzzer's 4 KB default: the gate's statement limit
  # (sql/nesting.h) and past it.
  max_len=()
  case "$stem" in
    gate) max_len=(-max_len=300000) ;;
  esac
  echo "== $stem: ${seconds}s from $corpus"
  "$fuzzer" -max_total_time="$seconds" -artifact_prefix="$root/$build/${stem}-" \
    "${max_len[@]}" "$scratch/$stem" "$corpus"
  found=$((found + 1))
done
[ "$found" -gt 0 ] || { echo "no fuzzers in $build (configure with -DTRACEGATE_FUZZ=ON)" >&2; exit 1; }
