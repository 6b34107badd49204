#!/usr/bin/env bash
# Install PageLens into ./.venv: PyTorch pinned first (this pair installs from the machine's local wheels on the
# project's machines; elsewhere it comes from PyPI), then PageLens with all its extras.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q torch==2.14.1 torchvision==0.29.1
.venv/bin/python -m pip install -q -e '.[all]'
echo "installed: $(.venv/bin/pagelens --help >/dev/null && echo pagelens) in $(pwd)/.venv"
