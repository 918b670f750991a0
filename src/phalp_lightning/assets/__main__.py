"""``python -m phalp_lightning.assets [list|generate|convert-smpl]``: see what is found, make stand-ins."""

from __future__ import annotations

import argparse
import sys

from phalp_lightning.assets import ASSETS, assets_root


def _list(root: str | None) -> int:
    base = assets_root(root)
    print(f"assets root: {base}  (set PHALP_ASSETS to change it)")
    width = max(len(name) for name in ASSETS)
    missing = 0
    for asset in ASSETS.values():
        path = base / asset.relpath
        found = path.is_file()
        missing += not found
        state = "found  " if found else "MISSING"
        stand_in = " (generate can write a stand-in)" if asset.generated and not found else ""
        print(f"  {state} {asset.name:<{width}}  {path}  -- {asset.description}; used by {asset.used_by}{stand_in}")
    if missing:
        print(f"{missing} asset(s) missing. `python -m phalp_lightning.assets generate` writes the synthetic body-model set.")
    return 0


def main(argv: list[str] | None = None) -> int:
    root_help = "assets folder (default: $PHALP_ASSETS or ~/.cache/phalp_lightning)"
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS keeps the top-level value unless the option is given after the sub-command.
    common.add_argument("--root", default=argparse.SUPPRESS, help=root_help)
    parser = argparse.ArgumentParser(prog="python -m phalp_lightning.assets", description=__doc__)
    parser.add_argument("--root", default=None, help=root_help)
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("list", parents=[common], help="list every asset, where it is looked for and whether it was found")
    generate = sub.add_parser("generate", parents=[common], help="write the synthetic body-model asset set")
    generate.add_argument("--force", action="store_true", help="overwrite files that already exist")
    convert = sub.add_parser("convert-smpl", parents=[common], help="convert an official SMPL pickle to plain numpy arrays")
    convert.add_argument("source", help="basicModel_neutral_lbs_10_207_0_v1.0.0.pkl (or SMPL_NEUTRAL.pkl)")
    args = parser.parse_args(argv)

    if args.command == "generate":
        from phalp_lightning.assets.synthetic import write_synthetic_assets

        written = write_synthetic_assets(assets_root(args.root), overwrite=args.force)
        for path in written:
            print(f"wrote {path}")
        if not written:
            print("nothing written: every file exists already (use --force to overwrite)")
        return 0
    if args.command == "convert-smpl":
        from phalp_lightning.assets.smpl_convert import convert_smpl_pickle

        target = assets_root(args.root) / ASSETS["smpl_neutral"].relpath
        convert_smpl_pickle(args.source, target)
        print(f"wrote {target}")
        return 0
    return _list(args.root)


if __name__ == "__main__":
    from phalp_lightning.errors import run_reporting_user_errors

    sys.exit(run_reporting_user_errors(main))
