#!/usr/bin/env bash
# The main job, with no downloads: install, generate the synthetic body model (if missing), render a
# synthetic video of walking mannequins with known tracks, track it with predict.py, and evaluate the
# tracks against the generator's ground truth when evaluate.py is available.
#
#   bash scripts/demo.sh                      # everything under outputs/demo
#   SKIP_SETUP=1 OUT=/tmp/demo bash scripts/demo.sh
#   CKPT=hmar.ckpt bash scripts/demo.sh       # with trained HMAR weights (real 3D outputs)
#
# Without CKPT, predict tracks the boxes alone (no HMAR: ids and boxes at the detector's speed, no 3D).
#   PREDICT_ARGS="render=boxes" bash scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
OUT=${OUT:-outputs/demo}
FRAMES=${FRAMES:-48}
PEOPLE=${PEOPLE:-2}
export PHALP_ASSETS=${PHALP_ASSETS:-$HOME/.cache/phalp_lightning}

if [ "${SKIP_SETUP:-0}" != 1 ]; then
    PYTHON="$PYTHON" bash scripts/setup.sh
fi
if [ ! -f "$PHALP_ASSETS/3D/models/smpl/SMPL_NEUTRAL.pkl" ]; then
    echo "== no body model under $PHALP_ASSETS: generating the synthetic one"
    "$PYTHON" -m phalp_lightning.assets generate
fi

echo "== synthetic video ($FRAMES frames, $PEOPLE people) -> $OUT/video"
"$PYTHON" -m phalp_lightning.datamodules.synthetic video --out "$OUT/video" --num-frames "$FRAMES" --num-people "$PEOPLE"
VIDEO="$OUT/video/video.mp4"

if [ -z "${CKPT:-}" ]; then
    echo "== predict on $VIDEO: no CKPT, so boxes and ids only (the detector's speed). CKPT=<hmar checkpoint> adds HMAR:"
    echo "   SMPL pose and shape, 3D positions, meshes (PREDICT_ARGS=render=mesh) and the tracker's 3D cues"
else
    echo "== predict on $VIDEO with HMAR $CKPT"
fi
# shellcheck disable=SC2086
"$PYTHON" predict.py video="$VIDEO" ckpt="${CKPT:-null}" hydra.run.dir="$OUT/predict" overwrite=true ${PREDICT_ARGS:-render=boxes}

# The generator writes <OUT>/video/gt/gt.txt (sequence "video", the folder's name) and predict names
# video.mp4's results "video": evaluation pairs them by that name.
if "$PYTHON" -c "import phalp_lightning.pipelines.evaluate" 2>/dev/null; then
    echo "== evaluate against $OUT/video/gt/gt.txt"
    "$PYTHON" evaluate.py pred="$OUT/predict/mot" gt="$OUT/video/gt/gt.txt" format=mot logger=none hydra.run.dir="$OUT/evaluate"
fi
echo "== done: results in $OUT/predict (results/*.pkl|npz, mot/*.txt, PHALP_*.mp4)"
