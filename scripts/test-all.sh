#!/usr/bin/env bash
# `make test`: every test, twice over. First the release build (RelWithDebInfo, -O2) and the
# whole suite; then the same suite, gateway included, built with AddressSanitizer + UBSan
# (-O1, build-asan/). Prints each phase's wall time at the end, and on failure too.
#
# Knobs: JOBS (default: nproc), PHASES (default "release asan"; "release" alone is
# `make test-release`, "asan" alone `make test-asan`).
set -uo pipefail
cd "$(dirname "$0")/.."
jobs=${JOBS:-$(nproc)}
phases=${PHASES:-"release asan"}
names=()
seconds=()
status=0

phase() {  # phase <name> <command...>
  local name=$1 start
  shift
  start=$(date +%s)
  echo "== $name: $*"
  "$@"
  local rc=$?
  names+=("$name")
  seconds+=($(( $(date +%s) - start )))
  if [ $rc -ne 0 ]; then
    echo "== $name FAILED (exit $rc)" >&2
    status=$rc
  fi
  return $rc
}

report() {
  local total=0 i
  echo
  echo "phase                         seconds"
  for i in "${!names[@]}"; do
    printf '%-28s %8d\n' "${names[$i]}" "${seconds[$i]}"
    total=$((total + seconds[i]))
  done
  printf '%-28s %8d  (%dm%02ds)\n' "total" "$total" $((total / 60)) $((total % 60))
}
trap report EXIT

phase "install dependencies" ./scripts/install-deps.sh || exit $status
phase "format check" make --no-print-directory format-check || exit $status
for p in $phases; do
  case "$p" in
    release)
      phase "release: configure + build" make --no-print-directory build-only SANITIZE=0 \
        || exit $status
      phase "release: tests" ctest --test-dir build --output-on-failure --timeout 900 \
        -j "$jobs" || exit $status
      ;;
    asan)
      phase "asan+ubsan: configure + build" make --no-print-directory build-only SANITIZE=1 \
        || exit $status
      phase "asan+ubsan: tests" ctest --test-dir build-asan --output-on-failure \
        --timeout 1800 -j "$jobs" || exit $status
      ;;
    *)
      echo "unknown phase $p" >&2
      exit 2
      ;;
  esac
done
exit $status
