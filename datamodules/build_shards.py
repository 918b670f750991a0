"""``python -m phalp_lightning.datamodules.build_shards {posetrack-crops,phalp-tracklets,given-boxes} ...``

Examples::

    # HMAR crops from PoseTrack (one JSON per video; file names relative to --images)
    python -m phalp_lightning.datamodules.build_shards posetrack-crops \\
        --annotations posetrack_data/train/*.json --images /data/posetrack --out shards/posetrack/train

    # Pose-transformer tracklets from PHALP results, with AVA labels at the keyframes
    python -m phalp_lightning.datamodules.build_shards phalp-tracklets \\
        --results outputs/results/demo_*.pkl --ava-csv ava_train_v2.2.csv --out shards/ava/train

    # Ground-truth boxes as PHALP's given-boxes pkl
    python -m phalp_lightning.datamodules.build_shards given-boxes --posetrack 000001_bonn_val.json --out gt_boxes.pkl
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m phalp_lightning.datamodules.build_shards", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    crops = commands.add_parser("posetrack-crops", help="PoseTrack JSON + frames -> HMAR crop shards")
    crops.add_argument("--annotations", nargs="+", type=Path, required=True, help="PoseTrack JSON files or folders of them")
    crops.add_argument("--images", type=Path, required=True, help="root that the JSON file_name entries are relative to")
    crops.add_argument("--out", type=Path, required=True, help="shard prefix: writes OUT-000000.tar ...")
    crops.add_argument("--crop-size", type=int, default=256)
    crops.add_argument("--shard-size", type=int, default=1000)
    crops.add_argument("--dataset", default="posetrack")
    crops.add_argument("--all-frames", action="store_true", help="also use frames without is_labeled")

    tracklets = commands.add_parser("phalp-tracklets", help="PHALP results pkls (+ AVA CSV) -> tracklet shards")
    tracklets.add_argument("--results", nargs="+", type=Path, required=True, help="results pkls or folders of them")
    tracklets.add_argument("--out", type=Path, required=True, help="shard prefix")
    tracklets.add_argument("--window", type=int, default=32)
    tracklets.add_argument("--stride", type=int, default=16)
    tracklets.add_argument("--shard-size", type=int, default=1000)
    tracklets.add_argument("--dataset", default="phalp")
    tracklets.add_argument("--with-appearance", action="store_true")
    tracklets.add_argument("--ava-csv", type=Path, default=None, help="AVA v2.2 ground-truth CSV to attach actions from")
    tracklets.add_argument("--ava-excluded", type=Path, default=None, help="AVA excluded-timestamps CSV")
    tracklets.add_argument("--fps", type=float, default=30.0)
    tracklets.add_argument("--ava-start-second", type=int, default=900)
    tracklets.add_argument("--results-prefix", default="demo_", help="stripped from result file stems to get the video id")

    given = commands.add_parser("given-boxes", help="ground-truth boxes -> PHALP given-boxes pkl")
    source = given.add_mutually_exclusive_group(required=True)
    source.add_argument("--posetrack", type=Path, help="a PoseTrack JSON file")
    source.add_argument("--mot", type=Path, help="a MOT gt.txt (needs --frames)")
    given.add_argument("--frames", type=Path, help="folder of the sequence's .jpg frames (for --mot)")
    given.add_argument("--out", type=Path, required=True)
    return parser


def _files(paths: list[Path], suffix: str) -> list[Path]:
    files = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(path.glob(f"*{suffix}")))
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"no such file or folder: {path}")
    if not files:
        raise FileNotFoundError(f"no {suffix} files in {[str(p) for p in paths]}")
    return files


def main(argv: list[str] | None = None) -> None:
    """Entry point of the shard builder command."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = _parser().parse_args(argv)
    from phalp_lightning.datamodules import builders

    if args.command == "posetrack-crops":
        summary = builders.build_posetrack_crops(
            _files(args.annotations, ".json"), args.images, args.out, crop_size=args.crop_size,
            shard_size=args.shard_size, dataset=args.dataset, labeled_only=not args.all_frames,
        )
    elif args.command == "phalp-tracklets":
        ava = None
        if args.ava_csv is not None:
            from phalp_lightning.datamodules.formats.ava import read_ava_csv, read_ava_excluded

            excluded = read_ava_excluded(args.ava_excluded) if args.ava_excluded else None
            ava = read_ava_csv(args.ava_csv, excluded=excluded)
        summary = builders.build_phalp_tracklets(
            _files(args.results, ".pkl"), args.out, window=args.window, stride=args.stride, shard_size=args.shard_size,
            dataset=args.dataset, with_appearance=args.with_appearance, ava=ava, fps=args.fps,
            ava_start_second=args.ava_start_second, results_prefix=args.results_prefix,
        )
    else:
        from phalp_lightning.datamodules.formats.phalp_results import write_given_boxes

        if args.posetrack is not None:
            frames = builders.posetrack_to_given_boxes(args.posetrack)
        else:
            if args.frames is None:
                raise SystemExit("--mot needs --frames (the folder of the sequence's .jpg frames)")
            frames = builders.mot_to_given_boxes(args.mot, [path.name for path in sorted(args.frames.glob("*.jpg"))])
        path = write_given_boxes(args.out, frames)
        summary = {"given_boxes": str(path), "frames": len(frames)}
    print(json.dumps({key: value for key, value in summary.items() if key != "shards"}, indent=2))


if __name__ == "__main__":
    main()
