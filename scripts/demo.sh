#!/usr/bin/env bash
# The project's main job: set up (idempotent), then run the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/p4ft --help
