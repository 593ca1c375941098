#!/usr/bin/env bash
# The project's test command: set up (idempotent), then lint and run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/ruff check .
exec .venv/bin/python -m pytest "$@"
