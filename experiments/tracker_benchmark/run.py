"""Tracker ms/frame before and after the speed work, side by side on identical inputs.

Every row tracks one synthetic detection stream twice, each in a fresh subprocess: with the pinned
copy of the tracker from before the speed work (``baseline_tracker.py``, "before") and with the
current ``phalp_lightning.tracking`` code ("after"). Both get the same frames (same seed), the same
appearance encoder, the constant pose predictor and the same association rule (the original's
``eq019``; today's default picks a gated rule with a 2D motion cue, a different algorithm), and run
on one CPU thread. The benchmark fails
unless both give the same track ids frame for frame; it also compares every emitted tensor (ids,
time since update, predicted pose and location, the detection rows) bit for bit and reports it.

Scenes: ``synthetic`` is ``phalp_lightning.datamodules.synthetic.scenes.detection_stream`` (every UV map shows
the same texels, so every pair's visible sets are nested); ``turning`` gives each person a visible
half of the texture that turns with time (people facing apart share no texel, others overlap
partly), which exercises the general per-pair path and the empty-overlap skip.
Encoders: ``stand-in`` (an average pool) and ``hmar``: HMAR's real appearance encoder
(``EncodingHead.encode``) with untrained, seeded weights (the cost is the same as with trained
weights; the codes, hence the distances, are not).

    python experiments/tracker_benchmark/run.py            # full: UV 64: 300 frames, UV 256: 60
    python experiments/tracker_benchmark/run.py --quick    # fewer frames and rows

Results: results.json and results.md next to this file (or --out).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

from phalp_lightning.utils.benchmarking import write_results

HERE = Path(__file__).resolve().parent


class CountingEncoder:
    """Wraps an encoder and counts forwards and maps encoded."""

    def __init__(self, encoder) -> None:
        self.encoder = encoder
        self.calls = 0
        self.maps = 0

    def __call__(self, maps):
        self.calls += 1
        self.maps += int(maps.shape[0])
        return self.encoder(maps)


def make_encoder(name: str, seed: int):
    import torch
    from phalp_lightning.datamodules.synthetic.scenes import StandInAppearanceEncoder

    if name == "stand-in":
        return StandInAppearanceEncoder()
    if name == "hmar":
        from phalp_lightning.models.components.appearance import EncodingHead

        torch.manual_seed(seed)
        head = EncodingHead().eval()
        return lambda maps: head.encode(maps).flatten(1)
    raise ValueError(f"unknown encoder {name!r}")


def turning_stream(num_people: int, num_frames: int, seed: int, uv_size: int):
    """``detection_stream`` whose UV maps show a half of the texture that turns with each person.

    Texture column u is seen when its angle ``2 pi u / S`` is within 60 degrees of the person's
    heading (a third of the columns); headings start at random and turn by up to 0.03 rad per frame.
    """
    import math

    import torch
    from phalp_lightning.datamodules.synthetic.scenes import detection_stream

    generator = torch.Generator().manual_seed(seed + 7)
    heading0 = 2 * math.pi * torch.rand(num_people + 1, generator=generator)
    turn = 0.06 * (torch.rand(num_people + 1, generator=generator) - 0.5)
    column_angle = 2 * math.pi * torch.arange(uv_size) / uv_size
    for frame in detection_stream(num_people, num_frames, seed=seed, uv_size=uv_size):
        heading = heading0[frame.gt_track_ids] + turn[frame.gt_track_ids] * frame.frame_index
        facing = torch.cos(column_angle[None, :] - heading[:, None]) > 0.5  # (N, S) columns seen
        seen = (frame.uv[:, 3] > 0.5) & facing[:, None, :]
        frame.uv[:, :3] *= seen[:, None]
        frame.uv[:, 3] = torch.where(seen, 1.0, -1.0)
        yield frame


def fingerprint(frames) -> tuple[list, str]:
    """(track ids and time since update per emitted frame, sha256 of every emitted tensor's bytes)."""
    digest = hashlib.sha256()
    ids = []
    for frame_tracks in frames:
        ids.append([frame_tracks.frame_index, frame_tracks.track_ids.tolist(), frame_tracks.time_since_update.tolist()])
        detections = frame_tracks.detections
        for tensor in (
            frame_tracks.predicted_pose,
            frame_tracks.predicted_location,
            detections.boxes,
            detections.scores,
            detections.pose,
            detections.location,
            detections.appearance,
        ):
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return ids, digest.hexdigest()


def run_single(impl: str, people: int, frames: int, uv_size: int, scene: str, encoder_name: str,
               reference: bool, seed: int) -> dict:
    """Track one stream in this process with the 'before' or 'after' tracker; return its figures."""
    import torch
    from phalp_lightning.datamodules.synthetic.scenes import detection_stream

    torch.set_num_threads(1)
    if impl == "before":
        sys.path.insert(0, str(HERE))
        from baseline_tracker import PHALPTracker
    else:
        from phalp_lightning.tracking.phalp_tracker import PHALPTracker

    # CPU time of this process instead of wall time: the machine is shared, and a process that
    # waits for a core should not be charged for it. Both trackers time their stages through their
    # module's ``time.perf_counter``; point it at the process clock.
    clock = time.process_time
    sys.modules[PHALPTracker.__module__].time = SimpleNamespace(perf_counter=clock)
    encoder = CountingEncoder(make_encoder(encoder_name, seed))
    # The pinned tracker has one rule, the original's EQ_019 cost and assignment; today's tracker
    # picks a gated rule with a 2D motion cue by default (docs/tracker.md), a different algorithm
    # whose ids need not match. The comparison is the same rule, before and after.
    if impl == "before":
        same_rule = {}
    else:
        from phalp_lightning.tracking.rule_eq019 import EQ019Rule

        same_rule = {"association": EQ019Rule()}
    tracker = PHALPTracker(appearance_encoder=encoder, reference_mode=reference, **same_rule)
    stream = (
        turning_stream(people, frames, seed, uv_size)
        if scene == "turning"
        else detection_stream(people, frames, seed=seed, uv_size=uv_size)
    )
    start_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    emitted = []
    update_seconds = 0.0
    detections = 0
    for frame in stream:
        detections += len(frame)
        start = clock()
        emitted += tracker.update(frame)
        update_seconds += clock() - start
    start = clock()
    emitted += tracker.finalize()
    update_seconds += clock() - start
    ids, digest = fingerprint(emitted)
    person_ids: dict[int, set[int]] = {}
    for frame_tracks in emitted:
        seen = frame_tracks.detected
        for track_id, person in zip(
            frame_tracks.track_ids[seen].tolist(), frame_tracks.detections.gt_track_ids[seen].tolist(), strict=True
        ):
            person_ids.setdefault(person, set()).add(track_id)
    bank = tracker.tracks
    state_bytes = sum(t.numel() * t.element_size() for t in (bank.uv,) if t is not None)
    state_bytes += sum(t.numel() * t.element_size() for t in getattr(bank, "workspace", {}).values())
    return {
        "impl": impl,
        "people": people,
        "frames": frames,
        "uv_size": uv_size,
        "scene": scene,
        "encoder": encoder_name,
        "reference_mode": reference,
        "detections_per_frame": detections / frames,
        "ms_per_frame": {
            "total": 1000 * update_seconds / frames,
            **{name: 1000 * seconds / frames for name, seconds in tracker.stage_seconds.items()},
        },
        "texture_pairs_per_frame": tracker.counters.get("texture_pairs", 0) / frames,
        "disjoint_pairs_per_frame": tracker.counters.get("texture_pairs_disjoint", 0) / frames,
        "candidate_pairs_per_frame": tracker.counters.get("candidate_pairs", 0) / frames,
        "encoder_calls_per_frame": encoder.calls / frames,
        "encoded_maps_per_frame": encoder.maps / frames,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_growth_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - start_rss,
        "uv_state_mib": state_bytes / 2**20,
        "track_ids_per_person": sum(len(v) for v in person_ids.values()) / max(len(person_ids), 1),
        "ids": ids,
        "digest": digest,
    }


def run_floor(people: int, frames: int, uv_size: int, scene: str, encoder_name: str, seed: int) -> dict:
    """The UV-map work no exact tracker can skip, timed alone on the same stream ("floor").

    Per frame: the detection maps masked once (as the track bank does), each detection's masked map
    and the track map of each detected person seen before encoded once (the fewest maps that give
    every true track-detection pair its texture distance when visible sets are nested, as in the
    synthetic scene), and each detected person's track map blended with its detection in place. No cost, no
    assignment, no bookkeeping: the time an ideal tracker would still spend on 1 MiB maps.
    """
    import torch
    from phalp_lightning.datamodules.synthetic.scenes import detection_stream

    from phalp_lightning.tracking.track import TrackBank

    torch.set_num_threads(1)
    clock = time.process_time
    encoder = CountingEncoder(make_encoder(encoder_name, seed))
    stream = (
        turning_stream(people, frames, seed, uv_size)
        if scene == "turning"
        else detection_stream(people, frames, seed=seed, uv_size=uv_size)
    )
    bank = TrackBank()
    if people + 1 > bank.capacity:
        bank._allocate(people + 1)
    bank.uv = torch.zeros((bank.capacity, 4, uv_size, uv_size))
    seconds = 0.0
    seen = torch.zeros(bank.capacity, dtype=torch.bool)
    for frame in stream:
        rows = frame.gt_track_ids.to(torch.int64)  # the person's track lives in row = person id
        tracked = rows[seen[rows]].sort().values.tolist()
        start = clock()
        masked = bank.masked_detection_uv(frame.uv)
        with torch.no_grad():
            encoder(masked)
            # Track maps straight from storage, run of consecutive rows by run.
            first = 0
            for end in range(1, len(tracked) + 1):
                if end == len(tracked) or tracked[end] != tracked[end - 1] + 1:
                    encoder(bank.uv[tracked[first] : tracked[end - 1] + 1])
                    first = end
        bank.blend_uv_rows(rows, frame.uv, torch.arange(len(frame)), torch.full((len(frame),), 0.1, dtype=torch.float64))
        seconds += clock() - start
        seen[rows] = True
    return {"ms_per_frame": {"total": 1000 * seconds / frames}, "encoded_maps_per_frame": encoder.maps / frames}


def spawn(impl: str, setting: dict, seed: int) -> dict:
    command = [
        sys.executable, __file__, "--single", impl, str(setting["people"]), str(setting["frames"]),
        str(setting["uv_size"]), setting["scene"], setting["encoder"], str(int(setting["reference"])),
        "--seed", str(seed),
    ]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"benchmark run {impl} {setting} failed:\n{completed.stderr}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def settings(args: argparse.Namespace) -> list[dict]:
    small, large = (60, 20) if args.quick else (args.frames, args.large_uv_frames)
    rows = []

    def add(people, uv_size, frames, scene="synthetic", encoder="stand-in", reference=False):
        rows.append(dict(people=people, uv_size=uv_size, frames=frames, scene=scene, encoder=encoder,
                         reference=reference))

    for uv_size in args.uv_sizes:
        for people in args.people:
            add(people, uv_size, small if uv_size <= 64 else large)
    for people in args.reference_people:
        add(people, 256, large, reference=True)
    for people in args.turning_people:
        add(people, 256, large, scene="turning")
    for people in args.hmar_people:
        add(people, 256, args.hmar_frames, encoder="hmar")
        add(people, 256, args.hmar_frames, scene="turning", encoder="hmar")
    return rows


def row_label(r: dict) -> str:
    mode = "reference" if r["reference_mode"] else "default"
    return f"{r['people']} | {r['uv_size']} | {r['scene']} | {r['encoder']} | {mode} | {r['frames']}"


def floor_cell(before: dict, after: dict) -> str:
    floor = after.get("floor")
    if floor is None:
        return "-"
    floor_ms = floor["ms_per_frame"]["total"]
    return f"{floor_ms:.1f} ({before['ms_per_frame']['total'] / floor_ms:.1f}x)"


def markdown(pairs: list[tuple[dict, dict]], command: str) -> str:
    lines = [
        "# Tracker benchmark: before vs after the speed work, same inputs, same run",
        "",
        f"Command: `{command}`. Both trackers ran on the same stream in fresh processes (one CPU thread",
        "each), both with the original's association rule (`association=eq019`), alternating, as many",
        "times as `--repeats` says; the fastest run of each counts, and 'same ids'/'same outputs' hold",
        "over every run. Times are CPU time of the process (user + system) per frame, so a process",
        "waiting for a core on the shared machine is not charged; 'before' is `baseline_tracker.py`.",
        "Measured on a 2-core machine shared with other jobs: absolute times vary by tens of percent",
        "between runs; the ratios are what the benchmark is for.",
        "",
        "| people | UV | scene | encoder | mode | frames | before ms/frame | after ms/frame | **speed-up** "
        "| after: association / update / prediction / recording | encoded maps/frame before -> after "
        "| encoder calls/frame before -> after | texture pairs/frame (disjoint) | peak RSS MiB before -> after "
        "| UV state MiB after | same ids | same outputs | UV floor ms/frame (before / floor) |",
        "|---:|---:|:---|:---|:---|---:|---:|---:|---:|:---|:---|:---|:---|:---|---:|:---:|:---:|---:|",
    ]
    for before, after in pairs:
        b, a = before["ms_per_frame"], after["ms_per_frame"]
        lines.append(
            f"| {row_label(after)} | {b['total']:.1f} | {a['total']:.1f} | **{b['total'] / a['total']:.1f}x** | "
            f"{a['association']:.1f} / {a['update']:.1f} / {a['prediction']:.2f} / {a['recording']:.2f} | "
            f"{before['encoded_maps_per_frame']:.0f} -> {after['encoded_maps_per_frame']:.0f} | "
            f"{before['encoder_calls_per_frame']:.1f} -> {after['encoder_calls_per_frame']:.1f} | "
            f"{after['texture_pairs_per_frame']:.0f} ({after['disjoint_pairs_per_frame']:.0f}) | "
            f"{before['peak_rss_mib']:.0f} -> {after['peak_rss_mib']:.0f} | {after['uv_state_mib']:.0f} | "
            f"{'yes' if before['ids'] == after['ids'] else 'NO'} | "
            f"{'yes' if before['digest'] == after['digest'] else 'no'} | {floor_cell(before, after)} |"
        )
    lines += [
        "",
        "association = EQ_019 cost (texture of gated pairs through the encoder) + Hungarian; update = state,",
        "history and UV blending; prediction = ridge location fit + pose predictor; recording = FrameTracks",
        "bookkeeping and back-fill. Encoded maps: UV maps through the appearance encoder (before: 2 per gated",
        "pair); texture pairs: gated pairs whose texture is scored, in brackets those whose two visible",
        "sets share no texel (r_T = 0 without encoding). UV state: track UV maps plus reused buffers.",
        "'same outputs' compares every emitted tensor bit for bit (ids, predictions, detection rows).",
        "The hmar rows use HMAR's appearance encoder with untrained (seeded) weights.",
        "UV floor (synthetic default rows): the UV-map work no exact tracker can skip, timed alone on the",
        "same stream with the same kernels (`run_floor`): every detection map masked once, each detection",
        "and each detected person's track map encoded once, each track map blended once; no cost, no",
        "assignment, no bookkeeping. 'before / floor' is the largest speed-up any exact tracker could show",
        "in that row on this machine.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--people", type=int, nargs="+", default=[5, 20, 50, 100])
    parser.add_argument("--uv-sizes", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--frames", type=int, default=300, help="frames per stream with UV maps of <= 64 px")
    parser.add_argument("--large-uv-frames", type=int, default=60, help="frames per stream with larger UV maps")
    parser.add_argument("--reference-people", type=int, nargs="*", default=[20], help="reference-mode rows")
    parser.add_argument("--turning-people", type=int, nargs="*", default=[20, 100], help="'turning' scene rows")
    parser.add_argument("--hmar-people", type=int, nargs="*", default=[5], help="rows with HMAR's encoder")
    parser.add_argument("--hmar-frames", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="60 / 20 frames")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=1, help="runs of each tracker per row; the fastest counts")
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument("--single", nargs=7, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.single:
        impl, people, frames, uv_size, scene, encoder, reference = args.single
        if impl == "floor":
            print(json.dumps(run_floor(int(people), int(frames), int(uv_size), scene, encoder, args.seed)))
            return
        result = run_single(impl, int(people), int(frames), int(uv_size), scene, encoder, bool(int(reference)), args.seed)
        print(json.dumps(result))
        return

    pairs = []
    failures = []
    for setting in settings(args):
        # Repeats alternate before / after / floor in fresh processes; the fastest run of each
        # counts (a shared machine only ever adds time), and every run must give the same ids.
        runs: dict[str, list[dict]] = {"before": [], "after": [], "floor": []}
        with_floor = setting["scene"] == "synthetic" and not setting["reference"]
        for _ in range(args.repeats):
            for impl in ("before", "after", "floor") if with_floor else ("before", "after"):
                runs[impl].append(spawn(impl, setting, args.seed))
        fastest = {
            impl: min(found, key=lambda run: run["ms_per_frame"]["total"]) for impl, found in runs.items() if found
        }
        before, after = fastest["before"], fastest["after"]
        if with_floor:
            after["floor"] = fastest["floor"]
        pairs.append((before, after))
        same_ids = all(run["ids"] == before["ids"] for run in runs["before"] + runs["after"])
        same_outputs = all(run["digest"] == before["digest"] for run in runs["before"] + runs["after"])
        if not same_ids or (setting["reference"] and not same_outputs):
            failures.append(setting)
        b, a = before["ms_per_frame"]["total"], after["ms_per_frame"]["total"]
        print(
            f"{row_label(after).replace(' | ', ' ')}: before {b:8.1f} ms/frame, after {a:7.1f} ms/frame, "
            f"x{b / a:5.1f}; floor {after.get('floor', {}).get('ms_per_frame', {}).get('total', float('nan')):6.1f} ms/frame; maps/frame {before['encoded_maps_per_frame']:.0f} -> {after['encoded_maps_per_frame']:.0f}; "
            f"same ids {same_ids}, same outputs {same_outputs}",
            flush=True,
        )
    command_line = " ".join(["python experiments/tracker_benchmark/run.py", *sys.argv[1:]])
    args.out.mkdir(parents=True, exist_ok=True)
    summary = [
        {"before": {k: v for k, v in b.items() if k != "ids"}, "after": {k: v for k, v in a.items() if k != "ids"},
         "speedup": b["ms_per_frame"]["total"] / a["ms_per_frame"]["total"],
         "same_ids": b["ids"] == a["ids"], "same_outputs": b["digest"] == a["digest"]}
        for b, a in pairs
    ]
    write_results(args.out, {"command": command_line, "results": summary}, markdown(pairs, command_line))
    print(markdown(pairs, command_line))
    if failures:
        raise SystemExit(f"before and after disagree on ids (or reference-mode outputs) for {failures}")


if __name__ == "__main__":
    main()
