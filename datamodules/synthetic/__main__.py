"""``python -m phalp_lightning.datamodules.synthetic {video,crops,tracklets,all} --out DIR [options]``.

``all --out DIR`` writes DIR/crops, DIR/tracklets and DIR/video: the default data of
``python train.py model=hmar`` and ``model=pose_transformer`` when DIR is ``<data_dir>/synthetic``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m phalp_lightning.datamodules.synthetic", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--out", type=Path, required=True, help="output folder")
    common.add_argument("--seed", type=int, default=0)
    common.add_argument("--assets", type=Path, default=None, help="body-model assets folder (default: registry, else the generated mannequin)")

    video = commands.add_parser("video", parents=[common], help="a multi-person video with MOT and PoseTrack ground truth")
    video.add_argument("--num-frames", type=int, default=60)
    video.add_argument("--num-people", type=int, default=3)
    video.add_argument("--height", type=int, default=360)
    video.add_argument("--width", type=int, default=640)
    video.add_argument("--fps", type=float, default=30.0)
    video.add_argument("--no-mp4", action="store_true", help="write only the JPEG frames")

    crops = commands.add_parser("crops", parents=[common], help="person-crop shards for HMAR")
    crops.add_argument("--num-train", type=int, default=512)
    crops.add_argument("--num-val", type=int, default=128)
    crops.add_argument("--crop-size", type=int, default=128)
    crops.add_argument("--shard-size", type=int, default=128)

    tracklets = commands.add_parser("tracklets", parents=[common], help="tracklet shards for the pose transformer")
    tracklets.add_argument("--num-train-tracks", type=int, default=64)
    tracklets.add_argument("--num-val-tracks", type=int, default=16)
    tracklets.add_argument("--track-length", type=int, default=64)
    tracklets.add_argument("--window", type=int, default=32)
    tracklets.add_argument("--shard-size", type=int, default=128)
    tracklets.add_argument("--motions", nargs="+", default=None, metavar="MOTION",
                           help="labelled motions to draw tracks from (walk run stand turn wave); writes action labels")
    tracklets.add_argument("--noise-deg", nargs="+", type=float, default=(), metavar="DEG",
                           help="per-joint pose noise levels (degrees); each track gets one (docs/pose_transformer.md, Noise)")

    commands.add_parser("all", parents=[common], help="crops, tracklets and a video with the defaults, under OUT/{crops,tracklets,video}")
    return parser


def main(argv: list[str] | None = None) -> None:
    """Entry point of the synthetic data command."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = _parser().parse_args(argv)
    from phalp_lightning.datamodules.synthetic.people import BodyModelHandle

    body = BodyModelHandle(args.assets)
    if args.command in ("video", "all"):
        from phalp_lightning.datamodules.synthetic.video import make_synthetic_video

        options = dict(num_frames=60) if args.command == "all" else dict(
            num_frames=args.num_frames, num_people=args.num_people, height=args.height, width=args.width,
            fps=args.fps, write_video=not args.no_mp4,
        )
        out = args.out / "video" if args.command == "all" else args.out
        video = make_synthetic_video(out, seed=args.seed, body_model=body, **options)
        print(f"video: {video.num_frames} frames in {video.frames_dir}; MOT gt {video.mot_gt_path}; PoseTrack {video.posetrack_json_path}")
    if args.command in ("crops", "all"):
        from phalp_lightning.datamodules.synthetic.crop_shards import write_synthetic_crops

        options = {} if args.command == "all" else dict(
            num_train=args.num_train, num_val=args.num_val, crop_size=args.crop_size, shard_size=args.shard_size
        )
        out = args.out / "crops" if args.command == "all" else args.out
        entries = write_synthetic_crops(out, seed=args.seed, body_model=body, **options)
        print("crops: " + ", ".join(f"{split} {entry['num_samples']} samples in {entry['pattern']}" for split, entry in entries.items()))
    if args.command in ("tracklets", "all"):
        from phalp_lightning.datamodules.synthetic.tracklets import write_synthetic_tracklets

        options = {} if args.command == "all" else dict(
            num_train_tracks=args.num_train_tracks, num_val_tracks=args.num_val_tracks,
            track_length=args.track_length, window=args.window, shard_size=args.shard_size,
            motions=tuple(args.motions) if args.motions else None, noise_deg=tuple(args.noise_deg),
        )
        out = args.out / "tracklets" if args.command == "all" else args.out
        entries = write_synthetic_tracklets(out, seed=args.seed, body_model=body, **options)
        print("tracklets: " + ", ".join(f"{split} {entry['num_samples']} windows in {entry['pattern']}" for split, entry in entries.items()))


if __name__ == "__main__":
    main()
