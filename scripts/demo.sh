#!/usr/bin/env bash
# The project's main job: set up (idempotent), then the lab demo: two hosts, the softswitch and
# the controller; a TCP connection moves to [HW_OFFLOAD] before your eyes. Needs root (Mininet).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/p4ft lab --topo router --target softswitch "$@"
