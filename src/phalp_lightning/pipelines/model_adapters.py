"""The models as the tracker sees them: called on the model's device, answers on the tracker's.

The tracker keeps its state on the CPU; HMAR's appearance encoder and the pose transformer live
wherever Lightning put the system. predict wires them into the tracker through these adapters.
"""

from __future__ import annotations

import torch
from torch import Tensor


class OnModuleDevice(torch.nn.Module):
    """Calls ``module.<method>`` on the module's device and returns the result on the input's device.

    The tracker keeps its state on the CPU; HMAR's appearance encoder and the pose transformer live
    wherever Lightning put the system.
    """

    def __init__(self, module: torch.nn.Module, method: str) -> None:
        super().__init__()
        self.module = module
        self.method = method

    def forward(self, *inputs: Tensor) -> Tensor:
        device = next(self.module.parameters(), torch.zeros(())).device
        output = getattr(self.module, self.method)(*(x.to(device) for x in inputs))
        return output.to(inputs[0].device)


class PoseTransformerPredictor(OnModuleDevice):
    """The tracker's ``PosePredictor`` around a pose transformer (any device)."""

    def __init__(self, module: torch.nn.Module) -> None:
        super().__init__(module, "predict_next")

    def predict_next(self, pose_history: Tensor, time_history: Tensor, time_since_update: Tensor) -> Tensor:
        return self(pose_history, time_history, time_since_update)
