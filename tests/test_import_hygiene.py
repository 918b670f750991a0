import subprocess
import sys

HEAVY = ["pyrender", "wandb", "detectron2", "torchvision", "trackeval", "cv2", "lightning", "smplx", "webdataset"]

PROBE = """
import socket, sys
def refuse(*args, **kwargs):
    raise RuntimeError("network access at import time")
socket.socket.connect = refuse
socket.create_connection = refuse
import phalp_lightning, phalp_lightning.datamodules, phalp_lightning.assets, phalp_lightning.utils.vectors
import phalp_lightning.structures
heavy = {heavy!r}
print(",".join(name for name in heavy if name in sys.modules))
"""


def test_importing_the_package_loads_no_heavy_backend_and_no_network():
    result = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY)], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "", f"imported at package import: {result.stdout.strip()}"


def test_import_has_no_side_effects_on_environment():
    probe = "import os; before = dict(os.environ); import phalp_lightning, phalp_lightning.assets; print(before == dict(os.environ))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "True"
