#!/usr/bin/env bash
# Installs everything tracegate needs to build, run, test and benchmark on Debian 12.
# Idempotent: packages already present are skipped; apt-get update runs only when
# something is missing. Run as root (or via sudo).
set -euo pipefail

packages=(
  # toolchain
  build-essential g++ cmake ninja-build pkg-config clang clang-format clang-tidy
  libclang-rt-14-dev
  # libraries
  libboost1.74-dev libboost-program-options1.74-dev libssl-dev libyaml-cpp-dev libabsl-dev
  libspdlog-dev libfmt-dev libcli11-dev prometheus-cpp-dev nlohmann-json3-dev libsimdjson-dev
  libzstd-dev zlib1g-dev libsqlite3-dev libcurl4-openssl-dev libpq-dev libpg-query-dev libprotobuf-c-dev libhyperscan-dev
  # tests and benchmarks
  libgtest-dev libgmock-dev googletest libbenchmark-dev
  postgresql-15 postgresql-client-15 postgresql-contrib pgbouncer curl openssl wrk
  procps iproute2 python3
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

# Node.js (for the test OpenID provider) may come from Debian or from NodeSource; the
# NodeSource package bundles npm and conflicts with Debian's npm, so take whichever is there.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  missing+=(nodejs npm)
fi

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    SUDO=sudo
  else
    SUDO=
  fi
  echo "install-deps: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The test OpenID provider's npm packages (tests/oidc), exactly as pinned in its
# package-lock.json, so the integration tests run offline. Skipped while node_modules matches
# the lock file (a stamp holds the lock's hash). Under sudo, installed as the invoking user so
# node_modules stays theirs.
oidc_dir="$(cd "$(dirname "$0")/.." && pwd)/tests/oidc"
oidc_stamp="$oidc_dir/node_modules/.package-lock.sha256"
oidc_hash="$(sha256sum "$oidc_dir/package-lock.json" | cut -d' ' -f1)"
if [ "$(cat "$oidc_stamp" 2>/dev/null)" != "$oidc_hash" ]; then
  echo "install-deps: npm ci --prefix tests/oidc" >&2
  as_user=()
  if [ "$(id -u)" -eq 0 ] && [ -n "${SUDO_USER:-}" ] && [ "$SUDO_USER" != root ]; then
    as_user=(runuser -u "$SUDO_USER" --)
  fi
  "${as_user[@]}" npm ci --prefix "$oidc_dir" --no-audit --no-fund --loglevel=error >&2
  echo "$oidc_hash" | "${as_user[@]}" tee "$oidc_stamp" >/dev/null
fi
