#!/usr/bin/env bash
# Install phalp_lightning and its test tools into the current Python (a venv is recommended).
# torch is pinned first so that no other package can pull a second (CUDA) build.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
"$PYTHON" -m pip install -q torch==2.13.0
"$PYTHON" -m pip install -q -e ".[dev]" torch==2.13.0
# Reference HOTA (TrackEval fork) for the evaluation tests; --no-deps keeps the GUI opencv-python out.
"$PYTHON" -m pip install -q --no-deps trackeval==1.3.0
