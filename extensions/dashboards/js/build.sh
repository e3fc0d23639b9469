#!/bin/bash
# Rebuild the prebuilt JupyterLab mime extension in ../share/labextensions from src/, and
# record the sources' digest (tests/unit/test_dashboards_parts.py checks it is current).
# Needs node/npm and the project's environment (jupyter-builder comes with jupyterlab).
# Only the dashboard services load it (their JUPYTER_PATH holds ../share); sessions don't.
set -euo pipefail
cd "$(dirname "$0")"
npm install --no-audit --no-fund --loglevel=error
out=../share/labextensions/@aifactory/dashboard-charts
rm -rf "$out"
"${JUPYTER_BUILDER:-jupyter-builder}" build .
cat package.json src/index.js | sha256sum | cut -d' ' -f1 > "$out/source.sha256"
echo "built $(cd "$out" && pwd)"
