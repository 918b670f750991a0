#!/usr/bin/env bash
# Second CI stage (.ci/run): the real detector backends (detectron2's ViTDet-H and Mask R-CNN, torchvision's Mask R-CNN)
# in a virtual environment of their own, then the tests marked `real_backends`.
#
# Why a second environment: torchvision's compiled ops do not load beside the CPU-only torch wheel that the
# main environment uses, while PyPI's default (CUDA) torch build runs on a CPU-only machine. `pip --isolated`
# ignores the machine's pip configuration (which would substitute a local CPU torch wheel). detectron2 is
# not on PyPI: a wheel built from its source lies in ../shared/wheels; without it the stage is skipped.
#
# Environment: PHALP_WHEELS (default ../shared/wheels), BACKENDS_VENV (default .venv-backends),
# PYTHON (default python3; must be CPython 3.11 for the cp311 wheel). Extra args go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=${PHALP_WHEELS:-../shared/wheels}
D2_WHEEL="$WHEELS/detectron2-0.6-cp311-cp311-linux_x86_64.whl"
if [ ! -f "$D2_WHEEL" ]; then
    echo "real-backends stage skipped: no detectron2 wheel at $D2_WHEEL (set PHALP_WHEELS to the folder holding it)"
    exit 0
fi
PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
    echo "real-backends stage skipped: the detectron2 wheel is for CPython 3.11, $PYTHON is $("$PYTHON" -V 2>&1) (set PYTHON)"
    exit 0
fi
VENV=${BACKENDS_VENV:-.venv-backends}
start=$(date +%s)
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --isolated --disable-pip-version-check)
TORCH_PINS=(torch==2.13.0 torchvision==0.28.0)
# setuptools<81: detectron2's model zoo imports pkg_resources. timm: ViTDet's backbone. detectron2's own
# dependencies (fvcore, iopath, pycocotools, ...) come from PyPI through the wheel's metadata.
"${PIP[@]}" install -q "${TORCH_PINS[@]}" "setuptools<81" timm "$D2_WHEEL"
# The project with its runtime dependencies and the test runner; the pins keep the CUDA torch build.
"${PIP[@]}" install -q -e . "${TORCH_PINS[@]}" "pytest>=8" "pillow>=10"
echo "real-backends environment ready in $(( $(date +%s) - start )) s"
set +e
# Only the detector test modules are collected: the others import tools (wandb, av, ...) that this
# environment leaves out.
"$VENV/bin/python" -m pytest -q -p no:cacheprovider -m real_backends --durations=15 tests/test_detectors*.py "$@"
status=$?
set -e
echo "real-backends stage took $(( $(date +%s) - start )) s"
if [ "$status" -eq 5 ]; then echo "no real-backend tests were collected" >&2; exit 1; fi
exit "$status"
