"""``python -m phalp_lightning.datamodules.synthetic {video,crops,tracklets,all} --out DIR [options]``."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m phalp_lightning.datamodules.synthetic", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    video = commands.add_parser("video", help="a multi-person video with MOT and PoseTrack ground truth")
    video.add_argument("--out", type=Path, required=True, help="output folder")
    video.add_argument("--num-frames", type=int, default=60)
    video.add_argument("--num-people", type=int, default=3)
    video.add_argument("--height", type=int, default=360)
    video.add_argument("--width", type=int, default=640)
    video.add_argument("--seed", type=int, default=0)
    video.add_argument("--fps", type=float, default=30.0)
    video.add_argument("--no-mp4", action="store_true", help="write only the JPEG frames")
    video.add_argument("--assets", type=Path, default=None, help="body-model assets folder (default: registry, else the mannequin)")
    return parser


def main(argv: list[str] | None = None) -> None:
    """Entry point of the synthetic data command."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = _parser().parse_args(argv)
    if args.command == "video":
        from phalp_lightning.datamodules.synthetic.video import make_synthetic_video

        video = make_synthetic_video(
            args.out, num_frames=args.num_frames, num_people=args.num_people, height=args.height, width=args.width,
            seed=args.seed, fps=args.fps, write_video=not args.no_mp4, assets_root=args.assets,
        )
        print(f"wrote {video.num_frames} frames to {video.frames_dir}; MOT gt {video.mot_gt_path}; PoseTrack {video.posetrack_json_path}")


if __name__ == "__main__":
    main()
