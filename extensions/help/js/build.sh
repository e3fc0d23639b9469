#!/bin/bash
# Rebuild the prebuilt JupyterLab extension in ../labextension from src/ and style/, and
# record the sources' digest (tests/unit/test_help_lab.py checks it is current).
# Needs node/npm and the project's environment (jupyter-builder comes with jupyterlab).
set -euo pipefail
cd "$(dirname "$0")"
npm install --no-audit --no-fund --loglevel=error
rm -rf ../labextension
"${JUPYTER_BUILDER:-jupyter-builder}" build .
cat package.json src/index.js style/index.css | sha256sum | cut -d' ' -f1 > ../labextension/source.sha256
echo "built $(cd .. && pwd)/labextension; pip install the project again to install it"
