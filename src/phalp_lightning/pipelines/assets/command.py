"""``python -m phalp_lightning.assets [list|download|verify|generate|convert-smpl]``: get and check assets.

  download GROUP ...   fetch released files (groups: 3d, weights, ava, detector, all)
  verify               check every file present by content (keys, shapes, pickles)
  list                 where each file is looked for and whether it is there and complete
  generate             write the synthetic body-model set (no licence needed)
  convert-smpl FILE    convert the licensed SMPL pickle (SMPL is never downloaded)
"""

from __future__ import annotations

import argparse

from phalp_lightning.assets import ASSETS, assets_root


def _list(root: str | None) -> int:
    from phalp_lightning.assets.remote import download_command, remote_for
    from phalp_lightning.assets.stand_ins import is_stand_in
    from phalp_lightning.pipelines.assets.checks import AssetContentError, check_asset

    base = assets_root(root)
    print(f"assets root: {base}  (set PHALP_ASSETS to change it)")
    width = max(len(name) for name in ASSETS)
    missing = broken = 0
    for asset in ASSETS.values():
        path = base / asset.relpath
        remote = remote_for(asset.name)
        detail = ""
        if not path.is_file():
            state = "MISSING"
            missing += 1
            get = [f"`{download_command(remote.group)}`"] if remote else []
            get += ["generate writes a stand-in"] if asset.generated else []
            detail = f" ({'; '.join(get)})" if get else ""
        else:
            try:
                # Headers and file ends only: tells a truncated file without reading gigabytes.
                check_asset(asset.name, path, full=False)
                state = "found  "
                detail = " (synthetic stand-in)" if asset.generated and is_stand_in(base, asset.relpath) else ""
            except AssetContentError as error:
                state = "BROKEN "
                broken += 1
                detail = f" ({error.what.removeprefix(str(path) + ' ')})"
        print(f"  {state} {asset.name:<{width}}  {path}  -- {asset.description}; used by {asset.used_by}{detail}")
    if missing:
        print(
            f"{missing} asset(s) missing. `python -m phalp_lightning.assets download all` fetches the released files; "
            "`python -m phalp_lightning.assets generate` writes the synthetic body-model set."
        )
    if broken:
        print(f"{broken} file(s) are incomplete or damaged: `python -m phalp_lightning.assets verify` says why.")
    return 0


def _verify(root: str | None, quick: bool) -> int:
    from phalp_lightning.assets import how_to_get
    from phalp_lightning.assets.remote import download_command, remote_for
    from phalp_lightning.errors import UserError
    from phalp_lightning.pipelines.assets.checks import AssetContentError, check_asset

    base = assets_root(root)
    print(f"assets root: {base}")
    invalid: list[str] = []
    present = 0
    for asset in ASSETS.values():
        path = base / asset.relpath
        if not path.is_file():
            print(f"  missing  {asset.relpath}")
            continue
        present += 1
        remote = remote_for(asset.name)
        todo = f"rerun `{download_command(remote.group)}` (it fetches again every file that fails its check)" if remote else how_to_get(asset.name, root)
        try:
            summary = check_asset(
                asset.name,
                path,
                full=not quick,
                size=remote.size if remote else None,
                sha256=remote.sha256 if remote else None,
                pose_predictor_config=base / ASSETS["pose_predictor_config"].relpath,
                todo=todo,
            )
            print(f"  ok       {asset.relpath}: {summary}")
        except AssetContentError as error:
            print(f"  INVALID  {error}")
            invalid.append(asset.relpath)
    if invalid:
        raise UserError(
            f"{len(invalid)} of {present} asset file(s) under {base} fail their content check: {', '.join(invalid)}",
            "each line above says why and what to do (released files: `download <group>` fetches them again)",
        )
    print(f"{present} file(s) checked, all valid.")
    return 0


def _download(args: argparse.Namespace) -> int:
    from phalp_lightning.assets.remote import select
    from phalp_lightning.pipelines.assets.download import DownloadOptions, download_assets, smpl_note

    remotes = select(args.groups)
    if args.dry_run:
        base = assets_root(args.root)
        for remote in remotes:
            print(f"{remote.url(args.base_url)} -> {base / ASSETS[remote.asset].relpath}")
        return 0
    options = DownloadOptions(timeout=args.timeout, retries=args.retries, progress=not args.no_progress)
    download_assets(remotes, args.root, args.base_url, args.force, options)
    note = smpl_note(args.root)
    if note:
        print(note)
    return 0


def main(argv: list[str] | None = None) -> int:
    from phalp_lightning.assets.remote import ALL_GROUP, BASE_URL_ENV_VAR, GROUP_HELP

    root_help = "assets folder (default: $PHALP_ASSETS or ~/.cache/phalp_lightning)"
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS keeps the top-level value unless the option is given after the sub-command.
    common.add_argument("--root", default=argparse.SUPPRESS, help=root_help)
    parser = argparse.ArgumentParser(
        prog="python -m phalp_lightning.assets", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--root", default=None, help=root_help)
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("list", parents=[common], help="list every asset, where it is looked for and whether it is there")
    groups = "\n".join(f"  {name:<9} {text}" for name, text in GROUP_HELP.items())
    download = sub.add_parser(
        "download",
        parents=[common],
        help="fetch released files (3d, weights, ava, detector, all)",
        description=f"Fetch released asset files into the assets folder. Groups:\n{groups}\n  {ALL_GROUP:<9} all of them\n"
        "SMPL is licensed and never downloaded (see convert-smpl).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    download.add_argument("groups", nargs="+", metavar="GROUP", choices=[*GROUP_HELP, ALL_GROUP])
    download.add_argument(
        "--base-url",
        default=None,
        help=f"mirror holding the published tree (http(s):// or file://; default ${BASE_URL_ENV_VAR}, else the official hosts)",
    )
    download.add_argument("--force", action="store_true", help="fetch again even if a valid file is there")
    download.add_argument("--retries", type=int, default=4, help="retries per file after a transient failure (4)")
    download.add_argument("--timeout", type=float, default=60.0, help="seconds without data before a retry (60)")
    download.add_argument("--no-progress", action="store_true", help="no progress bars")
    download.add_argument("--dry-run", action="store_true", help="print each URL and where it would be saved")
    verify = sub.add_parser("verify", parents=[common], help="check every file present by content")
    verify.add_argument("--quick", action="store_true", help="headers and file ends only (no full read)")
    generate = sub.add_parser("generate", parents=[common], help="write the synthetic body-model asset set")
    generate.add_argument("--force", action="store_true", help="overwrite files that already exist")
    convert = sub.add_parser("convert-smpl", parents=[common], help="convert an official SMPL pickle to plain numpy arrays")
    convert.add_argument("source", help="basicModel_neutral_lbs_10_207_0_v1.0.0.pkl (or SMPL_NEUTRAL.pkl)")
    args = parser.parse_args(argv)

    if args.command == "download":
        return _download(args)
    if args.command == "verify":
        return _verify(args.root, args.quick)
    if args.command == "generate":
        from phalp_lightning.datamodules.synthetic.mannequin import write_synthetic_assets

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
