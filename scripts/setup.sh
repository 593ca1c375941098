#!/usr/bin/env bash
# Idempotent set-up on Debian 12 (as root): system packages, the project venv and the
# p4runtime-shell venv. Re-running it does nothing when everything is in place.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(mininet iproute2 ethtool iputils-ping python3-venv conntrack nftables)
need=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "setup: missing system packages (${need[*]}); run as root" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

PY=${PYTHON:-python3}
stamp=".venv/.stamp-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
    [ -x .venv/bin/python ] || "$PY" -m venv .venv
    .venv/bin/pip install -q --upgrade pip
    .venv/bin/pip install -q -e '.[dev]'
    rm -f .venv/.stamp-*
    touch "$stamp"
fi

# p4runtime-shell pins protobuf<3.21 (pure Python): it lives in its own venv, used by `p4ft shell`
# and the write-rate benchmark, never on the controller's hot path.
if [ ! -f .venv-shell/.stamp-0.0.6 ]; then
    [ -x .venv-shell/bin/python ] || "$PY" -m venv .venv-shell
    .venv-shell/bin/pip install -q --upgrade pip
    .venv-shell/bin/pip install -q 'p4runtime-shell==0.0.6'
    touch .venv-shell/.stamp-0.0.6
fi
