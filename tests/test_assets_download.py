"""``assets download`` / ``verify`` against a loopback HTTP server and a file:// mirror.

The server (127.0.0.1, a port the OS picks, started and stopped here) serves generated files under
the published names and paths with the official shapes and key names. A guard makes any connection
or name lookup for another host fail the test, so nothing here reaches the internet.
"""

from __future__ import annotations

import argparse
import ast
import errno
import io
import logging
import pickle
import shutil
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from phalp_lightning.datamodules.synthetic.mannequin import write_synthetic_assets
from test_hmar_network import read_key_table

from phalp_lightning.assets import ASSETS, AssetMissingError, asset_path
from phalp_lightning.assets.remote import GROUPS, REMOTE_FILES, select
from phalp_lightning.pipelines.assets.checks import AssetContentError, check_asset, hmar_reference_state_dict
from phalp_lightning.pipelines.assets.download import (
    DownloadError,
    DownloadOptions,
    download_assets,
    part_path,
)

POSE_KEY_TABLE = Path(__file__).parent / "data" / "pose_predictor_keys_D128_L16_H16.tsv"
FAST = DownloadOptions(timeout=5, retries=2, backoff=0, chunk_size=64 * 1024, progress=False)
LOOPBACK = {"127.0.0.1", "::1", "localhost"}


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch):
    """Fail on any connection or name lookup that is not the loopback server; no proxies, no mirror env."""
    real_connect, real_getaddrinfo = socket.socket.connect, socket.getaddrinfo

    def connect(self, address):
        if isinstance(address, tuple) and address[0] not in LOOPBACK:
            raise AssertionError(f"test tried to reach {address}")
        return real_connect(self, address)

    def getaddrinfo(host, *args, **kwargs):
        if host not in LOOPBACK:
            raise AssertionError(f"test tried to look up {host}")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "PHALP_ASSETS_BASE_URL"):
        monkeypatch.delenv(name, raising=False)


def _torch_bytes(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _stub(shape, dtype=torch.float32) -> torch.Tensor:
    # One stored value viewed at the full shape: official key names and shapes in a few kilobytes.
    return torch.zeros((), dtype=dtype).expand(shape)


def official_hmar(drop_key: str | None = None) -> dict:
    model = {}
    for name, (shape, dtype) in read_key_table().items():
        if name != drop_key:
            model["HMAR." + name.replace("smpl_head.", "smplx_head.")] = _stub(shape, getattr(torch, dtype))
    return {"model": model}


def official_pose_predictor() -> dict:
    state = {}
    for line in POSE_KEY_TABLE.read_text().splitlines():
        key, shape = line.split("\t")[:2]
        state["encoder." + key] = _stub(ast.literal_eval(shape))
    # The released checkpoint pickles its OmegaConf config: it needs the full unpickler.
    return {"state_dict": state, "epoch": 3, "hyper_parameters": {"cfg": OmegaConf.create({"seed": 1})}}


POSE_YAML = (
    "configs:\n  in_feat: 128\n  frame_length: 125\n  mask_type_test: zero\n"
    "  transformer:\n    depth: 16\n    heads: 16\n    dim_head: 64\n    mlp_dim: 512\n"
    "    dropout: 0.1\n    droppath: 0.4\n    conv: {pad: 1, stride: 5}\n"
)


# The ViTDet-H weights served here hold three of the network's arrays: the content check compares them
# with that part of the shipped layout (the full 2.7 GB file is checked in tests/test_detectors_real.py).
VITDET_SAMPLE = {
    "backbone.net.patch_embed.proj.weight": (1280, 3, 16, 16),
    "proposal_generator.rpn_head.conv.conv0.weight": (256, 256, 3, 3),
    "roi_heads.box_predictor.0.cls_score.weight": (81, 1024),
}


@pytest.fixture(autouse=True)
def vitdet_layout_of_the_sample(monkeypatch):
    from phalp_lightning.detection import detectron2

    full = detectron2.shipped_layout()
    assert all(full[name] == shape for name, shape in VITDET_SAMPLE.items())
    monkeypatch.setattr(detectron2, "shipped_layout", lambda config_name="": {name: full[name] for name in VITDET_SAMPLE})


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> dict[str, bytes]:
    """Published path -> content, for every downloadable file (generated, official names and shapes)."""
    root = tmp_path_factory.mktemp("generated")
    write_synthetic_assets(root)
    files = {remote.mirror_path: asset_path(remote.asset, root).read_bytes() for remote in GROUPS["3d"]}
    vitdet = {
        "model": {name: np.zeros(shape, np.float16) for name, shape in VITDET_SAMPLE.items()},
        "__author__": "generated for tests",
    }
    by_asset = {
        "hmar_weights": _torch_bytes(official_hmar()),
        "pose_predictor": _torch_bytes(official_pose_predictor()),
        "pose_predictor_config": POSE_YAML.encode(),
        "ava_labels": pickle.dumps({index: f"action {index}" for index in range(60)}, protocol=2),
        "ava_class_mapping": pickle.dumps({index: index for index in range(60)}, protocol=2),
        "vitdet_weights": pickle.dumps(vitdet, protocol=2),
    }
    files.update({remote.mirror_path: by_asset[remote.asset] for remote in REMOTE_FILES if remote.asset in by_asset})
    assert set(files) == {remote.mirror_path for remote in REMOTE_FILES}
    return files


class _Handler(BaseHTTPRequestHandler):
    timeout = 10  # a stuck client cannot hold a server thread for longer

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        server: LoopbackServer = self.server  # type: ignore[assignment]
        path = self.path.lstrip("/")
        requested = self.headers.get("Range")
        server.requests.append((path, requested))
        data = server.files.get(path)
        if data is None:
            self.send_error(404, "Not Found")
            return
        if server.unavailable.get(path, 0) > 0:
            server.unavailable[path] -= 1
            self.send_error(503, "Service Unavailable")
            return
        start = int(requested.split("=")[1].split("-")[0]) if requested and server.ranges else 0
        if start:
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        body = data[start:]
        if path in server.stall:  # headers sent, then silence longer than the client's timeout
            time.sleep(server.stall.pop(path))
        cut = server.drop_after.pop(path, None)
        if cut is not None:  # promise the whole body, send part of it, hang up
            body = body[:cut]
            self.close_connection = True
        self.wfile.write(body)
        server.bytes_sent += len(body)


class LoopbackServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, files: dict[str, bytes]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files = dict(files)
        self.ranges = True
        self.drop_after: dict[str, int] = {}
        self.unavailable: dict[str, int] = {}
        self.stall: dict[str, float] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.bytes_sent = 0

    def handle_error(self, request, client_address) -> None:
        pass  # a client that timed out and hung up is expected here

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture()
def server(published):
    server = LoopbackServer(published)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def _no_leftovers(root: Path) -> None:
    assert not [path for path in root.rglob("*") if path.name.endswith(".part") or ".tmp." in path.name]


def test_downloads_every_group_under_the_saved_names_then_skips_valid_files(server, tmp_path, published, caplog):
    lines: list[str] = []
    with caplog.at_level(logging.WARNING):
        paths = download_assets(select(["all"]), tmp_path, server.url, options=FAST, report=lines.append)
    assert {path.relative_to(tmp_path).as_posix() for path in paths} == {ASSETS[r.asset].relpath for r in REMOTE_FILES}
    for remote in REMOTE_FILES:  # renamed on the way: pose_predictor_40006.ckpt, ava_class_mappping.pkl
        assert asset_path(remote.asset, tmp_path).read_bytes() == published[remote.mirror_path]
    assert sorted(path for path, _ in server.requests) == sorted(published)
    assert all(rng is None for _, rng in server.requests)
    assert "HMAR weights, 686 of 686 keys match" in "\n".join(lines)
    # The pose predictor's pickled OmegaConf config loads with torch's weights-only loader.
    assert not any("full unpickler" in record.getMessage() for record in caplog.records)
    _no_leftovers(tmp_path)

    from phalp_lightning.assets.__main__ import main

    assert main(["verify", "--root", str(tmp_path)]) == 0
    server.requests.clear()
    lines.clear()
    download_assets(select(["weights", "3d"]), tmp_path, server.url, options=FAST, report=lines.append)
    assert server.requests == [] and all("already present, valid" in line for line in lines)
    download_assets(select(["ava"]), tmp_path, server.url, force=True, options=FAST, report=lines.append)
    assert len(server.requests) == 2


def test_a_dropped_connection_resumes_with_a_range_request(server, tmp_path, published):
    path = "3D/SMPL_to_J19.pkl"
    size = len(published[path])
    server.drop_after[path] = size // 2
    download_assets(select(["3d"]), tmp_path, server.url, options=FAST, report=lambda line: None)
    ranges = [rng for requested, rng in server.requests if requested == path]
    assert ranges == [None, f"bytes={size // 2}-"]
    assert asset_path("smpl_to_j19", tmp_path).read_bytes() == published[path]
    _no_leftovers(tmp_path)


def test_an_interrupted_run_leaves_a_part_file_that_the_next_run_resumes(server, tmp_path, published):
    path = "weights/hmar_v2_weights.pth"
    size = len(published[path])
    target = asset_path("hmar_weights", tmp_path)
    server.drop_after[path] = size // 3
    with pytest.raises(DownloadError, match="next run resumes it") as raised:
        download_assets(select(["weights"]), tmp_path, server.url, options=DownloadOptions(retries=0, progress=False))
    assert server.url + "/" + path in str(raised.value) and str(target) in str(raised.value)
    assert not target.exists() and part_path(target).stat().st_size == size // 3
    server.bytes_sent = 0
    download_assets(select(["weights"]), tmp_path, server.url, options=FAST, report=lambda line: None)
    assert target.read_bytes() == published[path]
    assert (path, f"bytes={size // 3}-") in server.requests
    hmar_bytes = size - size // 3
    assert server.bytes_sent < hmar_bytes + len(published["weights/pose_predictor_40006.ckpt"]) + 10_000


def test_a_server_without_range_support_restarts_from_zero(server, tmp_path, published, caplog):
    path = "3D/texture.npz"
    target = asset_path("texture", tmp_path)
    part = part_path(target)
    part.parent.mkdir(parents=True)
    part.write_bytes(published[path][:1000])
    server.ranges = False
    with caplog.at_level(logging.WARNING):
        download_assets(select(["3d"]), tmp_path, server.url, options=FAST, report=lambda line: None)
    assert (path, "bytes=1000-") in server.requests
    assert target.read_bytes() == published[path]  # not the first 1000 bytes twice
    assert any("restarting" in record.getMessage() for record in caplog.records)


def test_a_404_is_one_line_naming_url_file_and_what_to_do(server, tmp_path):
    del server.files["ava/ava_class_mappping.pkl"]
    command = [sys.executable, "-m", "phalp_lightning.assets", "download", "ava", "--root", str(tmp_path)]
    result = subprocess.run([*command, "--base-url", server.url, "--no-progress"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert f"{server.url}/ava/ava_class_mappping.pkl answered HTTP 404" in lines[0]
    assert str(asset_path("ava_class_mapping", tmp_path)) in lines[0] and "--base-url" in lines[0]
    assert "Traceback" not in result.stderr
    assert asset_path("ava_labels", tmp_path).is_file()  # fetched before the failure
    assert not asset_path("ava_class_mapping", tmp_path).exists()
    _no_leftovers(tmp_path)


def test_a_corrupt_checkpoint_fails_its_check_and_nothing_is_saved(server, tmp_path):
    server.files["weights/hmar_v2_weights.pth"] = _torch_bytes(official_hmar(drop_key="backbone.layer4.2.conv3.weight"))
    with pytest.raises(DownloadError) as raised:
        download_assets(select(["weights"]), tmp_path, server.url, options=FAST)
    message = str(raised.value)
    assert "fails the content check" in message and "backbone.layer4.2.conv3.weight" in message
    assert f"{server.url}/weights/hmar_v2_weights.pth" in message and "\n" not in message
    assert not asset_path("hmar_weights", tmp_path).exists()
    _no_leftovers(tmp_path)


def test_an_unreachable_host_and_a_full_disk_end_in_one_line(tmp_path, monkeypatch, published):
    with socket.socket() as probe:  # a loopback port with nothing listening
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    with pytest.raises(DownloadError, match=r"cannot download .*head_faces\.npy.*cannot connect.*after 2 attempts") as raised:
        download_assets(select(["3d"]), tmp_path, closed, options=DownloadOptions(retries=1, backoff=0, progress=False))
    assert "--base-url" in str(raised.value) and "\n" not in str(raised.value)

    import phalp_lightning.pipelines.assets.download as download

    def full_disk(handle, chunk):
        raise OSError(errno.ENOSPC, "No space left on device")

    mirror = tmp_path / "mirror"
    for path, data in published.items():
        (mirror / path).parent.mkdir(parents=True, exist_ok=True)
        (mirror / path).write_bytes(data)
    monkeypatch.setattr(download, "_write_chunk", full_disk)
    with pytest.raises(DownloadError, match="no space left on the device writing .*head_faces.npy.part") as raised:
        download_assets(select(["3d"]), tmp_path / "root", mirror.as_uri(), options=FAST)
    assert "larger disk" in str(raised.value) and not asset_path("head_faces", tmp_path / "root").exists()


def test_a_file_mirror_serves_an_air_gapped_copy(tmp_path, published, monkeypatch):
    mirror = tmp_path / "mirror"
    for path, data in published.items():
        (mirror / path).parent.mkdir(parents=True, exist_ok=True)
        (mirror / path).write_bytes(data)
    monkeypatch.setenv("PHALP_ASSETS_BASE_URL", mirror.as_uri())  # the environment variable, no option
    root = tmp_path / "root"
    download_assets(select(["3d", "weights"]), root, options=FAST, report=lambda line: None)
    for remote in [*GROUPS["3d"], *GROUPS["weights"]]:
        assert asset_path(remote.asset, root).read_bytes() == published[remote.mirror_path]
    (mirror / "ava/ava_labels.pkl").unlink()
    with pytest.raises(DownloadError, match="no such file in the mirror"):
        download_assets(select(["ava"]), root, options=FAST)


def test_list_and_verify_tell_truncated_files_from_complete_ones(tmp_path, published, capsys):
    from phalp_lightning.assets.__main__ import main

    for remote in REMOTE_FILES:
        path = asset_path(remote.asset, tmp_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = published[remote.mirror_path]
        truncated = remote.asset in ("bmap_256", "hmar_weights", "vitdet_weights", "smpl_to_j19")
        path.write_bytes(data[: len(data) // 2] if truncated else data)
    assert main(["list", "--root", str(tmp_path)]) == 0
    listing = capsys.readouterr().out
    broken = {line.split()[1] for line in listing.splitlines() if line.strip().startswith("BROKEN")}
    assert broken == {"bmap_256", "hmar_weights", "vitdet_weights", "smpl_to_j19"}
    assert listing.count(" found ") == len(REMOTE_FILES) - 4
    from phalp_lightning.errors import UserError

    with pytest.raises(UserError, match="4 of 13 asset file"):
        main(["verify", "--root", str(tmp_path)])
    report = capsys.readouterr().out
    assert report.count("INVALID") == 4 and "download 3d" in report


def test_checks_read_content_not_names(tmp_path, caplog):
    reference = hmar_reference_state_dict()  # built without any asset file
    table = read_key_table()
    assert list(reference) == list(table) and len(reference) == 686
    assert all(tuple(reference[key].shape) == shape for key, (shape, _) in table.items())

    wrong = tmp_path / "mean_std.npy"
    np.save(wrong, np.zeros((3, 229), np.float32))
    with pytest.raises(AssetContentError, match=r"mean_std has shape \(3, 229\), expected \(2, 1, N\)"):
        check_asset("mean_std", wrong)
    hostile = tmp_path / "ava_labels.pkl"
    hostile.write_bytes(b"cos\nsystem\n(S'echo pwned'\ntR.")  # a pickle that would run a shell command
    with pytest.raises(AssetContentError, match="refers to os.system"):
        check_asset("ava_labels", hostile)
    namespace = official_pose_predictor()
    namespace["hyper_parameters"] = argparse.Namespace(seed=1)  # what older Lightning versions pickled
    checkpoint = tmp_path / "pose_predictor.pth"
    torch.save(namespace, checkpoint)
    with caplog.at_level(logging.WARNING):
        assert check_asset("pose_predictor", checkpoint).startswith("pose predictor, 398 keys")
    assert any("full unpickler" in record.getMessage() for record in caplog.records)  # said, not silent
    html = tmp_path / "hmar_v2_weights.pth"
    html.write_text("<html>404</html>")  # what a misconfigured mirror returns with status 200
    with pytest.raises(AssetContentError, match="not load as a torch checkpoint"):
        check_asset("hmar_weights", html)


def test_missing_smpl_message_is_one_line_with_registration_and_convert_command(tmp_path):
    from phalp_lightning.assets import resolve

    with pytest.raises(AssetMissingError) as raised:
        resolve("smpl_neutral", tmp_path)
    message = str(raised.value)
    assert "\n" not in message and "https://smpl.is.tue.mpg.de" in message
    assert "`python -m phalp_lightning.assets convert-smpl <that file>`" in message
    assert "never downloaded" in message
    with pytest.raises(AssetMissingError, match=r"`python -m phalp_lightning\.assets download 3d`"):
        resolve("texture", tmp_path)


def test_predict_and_train_name_the_download_command_or_fetch_with_the_opt_in(compose_cfg, tmp_path, published):
    from phalp_lightning.pipelines.predict import run as predict_run
    from phalp_lightning.pipelines.train import run as train_run

    root = tmp_path / "assets"
    ckpt = root / "weights" / "hmar_v2_weights.pth"
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"")  # predict checks that the video exists before the assets
    overrides = [f"video={video}", f"ckpt={ckpt}", f"paths.assets_dir={root}", "progress_bar=false"]
    cfg = compose_cfg("predict", overrides)
    assert cfg.assets.download is False  # off by default
    with pytest.raises(AssetMissingError, match=r"ckpt=.*hmar_v2_weights\.pth: no such file.*download weights`"):
        predict_run(cfg)
    mean_std = root / "3D" / "mean_std.npy"
    with pytest.raises(AssetMissingError, match=r"model\.net\.mean_std=.*download 3d`"):
        train_run(compose_cfg("train", ["model=pose_transformer", f"model.net.mean_std={mean_std}", f"paths.assets_dir={root}"]))

    from phalp_lightning.pipelines.assets.for_run import prepare_run_assets

    mirror = tmp_path / "mirror"
    for path, data in published.items():
        (mirror / path).parent.mkdir(parents=True, exist_ok=True)
        (mirror / path).write_bytes(data)
    prepare_run_assets(compose_cfg("predict", [*overrides, "assets.download=true", f"assets.base_url={mirror.as_uri()}"]))
    assert ckpt.read_bytes() == published["weights/hmar_v2_weights.pth"]
    assert all(asset_path(remote.asset, root).is_file() for remote in GROUPS["3d"])
    assert not asset_path("pose_predictor", root).exists()  # only what the run needs
    assert not asset_path("smpl_neutral", root).exists()  # never downloaded
    shutil.rmtree(mirror)


def test_the_official_weights_experiment_points_at_the_downloaded_files(compose_cfg, tmp_path, monkeypatch):
    from phalp_lightning.pipelines.assets.for_run import prepare_run_assets

    monkeypatch.setenv("PHALP_ASSETS", str(tmp_path))
    cfg = compose_cfg("predict", ["experiment=official_weights", "video=clip.mp4"])
    assert cfg.ckpt == str(asset_path("hmar_weights", tmp_path))
    assert cfg.pose_predictor_ckpt == str(asset_path("pose_predictor", tmp_path))
    assert cfg.pose_predictor_config == str(asset_path("pose_predictor_config", tmp_path))
    with pytest.raises(AssetMissingError, match=r"^ckpt=.*`python -m phalp_lightning\.assets download weights`, or add assets\.download=true"):
        prepare_run_assets(cfg)


def test_download_replaces_generated_stand_ins_but_keeps_released_files(server, tmp_path, capsys):
    from phalp_lightning.assets.__main__ import main

    write_synthetic_assets(tmp_path)
    assert main(["list", "--root", str(tmp_path)]) == 0
    assert capsys.readouterr().out.count("(synthetic stand-in)") == sum(asset.generated for asset in ASSETS.values())
    released = io.BytesIO()
    np.save(released, np.stack([np.zeros((1, 226)), np.ones((1, 226))]).astype(np.float32))
    server.files["3D/mean_std.npy"] = released.getvalue()
    lines: list[str] = []
    download_assets(select(["3d"]), tmp_path, server.url, options=FAST, report=lines.append)
    assert asset_path("mean_std", tmp_path).read_bytes() == released.getvalue()
    assert all(line.endswith("(replaced the synthetic stand-in)") for line in lines) and len(lines) == 7
    server.requests.clear()
    download_assets(select(["3d"]), tmp_path, server.url, options=FAST, report=lines.append)
    assert [path for path, _ in server.requests] == [
        remote.mirror_path for remote in GROUPS["3d"] if remote.asset != "mean_std"
    ]  # the others equal the stand-ins byte for byte, so they still count as stand-ins


def test_a_busy_server_is_retried_and_a_silent_one_times_out(server, tmp_path, published):
    server.unavailable["ava/ava_labels.pkl"] = 2  # two 503 answers, then the file
    download_assets(select(["ava"]), tmp_path, server.url, options=FAST, report=lambda line: None)
    assert [path for path, _ in server.requests].count("ava/ava_labels.pkl") == 3
    assert asset_path("ava_labels", tmp_path).read_bytes() == published["ava/ava_labels.pkl"]

    server.stall["3D/head_faces.npy"] = 1.5
    options = DownloadOptions(timeout=0.3, retries=0, progress=False)
    with pytest.raises(DownloadError, match=r"cannot download .*head_faces\.npy.*timed out.*after 1 attempt\)"):
        download_assets(select(["3d"]), tmp_path / "stalled", server.url, options=options)
    assert not asset_path("head_faces", tmp_path / "stalled").exists()


def test_only_the_first_launched_process_downloads(compose_cfg, tmp_path, monkeypatch, published):
    from phalp_lightning.pipelines.assets.for_run import prepare_run_assets

    mirror = tmp_path / "mirror"
    for path, data in published.items():
        (mirror / path).parent.mkdir(parents=True, exist_ok=True)
        (mirror / path).write_bytes(data)
    ckpt = tmp_path / "assets" / "weights" / "hmar_v2_weights.pth"
    cfg = compose_cfg("predict", ["video=clip.mp4", f"ckpt={ckpt}", f"paths.assets_dir={tmp_path / 'assets'}",
                                  "assets.download=true", f"assets.base_url={mirror.as_uri()}", "progress_bar=false"])  # fmt: skip
    monkeypatch.setenv("RANK", "1")  # a second process started by torchrun: it must not write the same files
    with pytest.raises(AssetMissingError, match="download once beforehand"):
        prepare_run_assets(cfg)
    assert not (tmp_path / "assets").exists()
