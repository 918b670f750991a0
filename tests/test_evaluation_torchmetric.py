"""The torchmetrics wrapper: per-frame updates, state merging and a real 2-process DDP sync."""

from __future__ import annotations

import math
import os
import socket

import pytest
import torch

from phalp_lightning.evaluation.metric import MOTMetrics

BOX_A = [0.0, 0.0, 10.0, 20.0]  # xyxy
BOX_B = [100.0, 0.0, 110.0, 20.0]


def frames():
    """Two sequences. Sequence 0: one id switch at frame 2. Sequence 1: a missed second person."""
    for frame in range(4):
        yield dict(sequence=0, frame=frame, gt_boxes=torch.tensor([BOX_A]), gt_ids=torch.tensor([1]),
                   pred_boxes=torch.tensor([BOX_A]), pred_ids=torch.tensor([1 if frame < 2 else 2]))
    for frame in range(4):
        yield dict(sequence=1, frame=frame, gt_boxes=torch.tensor([BOX_A, BOX_B]), gt_ids=torch.tensor([1, 2]),
                   pred_boxes=torch.tensor([BOX_A]), pred_ids=torch.tensor([5]))


def expected_overall() -> dict[str, float]:
    # Pooled CLEAR: GT 4 + 8 = 12, FN 4, IDSW 1 -> MOTA = 1 - 5/12 = 7/12.
    # Identity: IDTP = 2 + 4, IDFN = 2 + 4, IDFP = 2 + 0 -> IDF1 = 12 / (12 + 6 + 2) = 3/5.
    # HOTA (combined, all similarities 1): TP 8, FN 4 -> DetA = 2/3; AssA = (4 * 1/2 + 4 * 1) / 8 = 3/4.
    return {"eval/MOTA": 7 / 12, "eval/IDF1": 3 / 5, "eval/IDSW": 1.0, "eval/FN": 4.0, "eval/DetA": 2 / 3,
            "eval/AssA": 3 / 4, "eval/HOTA": math.sqrt(2 / 3 * 3 / 4)}


def assert_expected(values: dict[str, torch.Tensor]) -> None:
    for key, value in expected_overall().items():
        assert float(values[key]) == pytest.approx(value, abs=1e-6), key


def test_metric_accumulates_frames_and_computes_hand_values():
    metric = MOTMetrics()
    for update in frames():
        metric.update(**update)
    values = metric.compute()
    assert_expected(values)
    assert set(metric.last_result.per_sequence) == {"0", "1"}
    assert metric.last_result.per_sequence["0"]["MOTA"] == pytest.approx(3 / 4)
    metric.reset()
    metric.update(**next(frames()))
    assert float(metric.compute()["eval/MOTA"]) == pytest.approx(1.0)


def test_split_states_merge_to_the_single_process_result():
    rank_a, rank_b = MOTMetrics(), MOTMetrics()
    for index, update in enumerate(frames()):
        (rank_a if index % 2 else rank_b).update(**update)  # every sequence spread over both "ranks"
    rank_b.update(**next(frames()))  # a padded duplicate, as DistributedSampler produces
    rank_a.merge_state(rank_b)
    assert_expected(rank_a.compute())


def test_bad_update_names_the_frame():
    metric = MOTMetrics()
    with pytest.raises(ValueError, match="2 ids but 1 boxes \\(sequence 3, frame 7\\)"):
        metric.update(torch.tensor([BOX_A]), torch.tensor([1, 2]), torch.zeros(0, 4), torch.zeros(0), frame=7, sequence=3)


def _ddp_worker(rank: int, world_size: int, port: int, results: dict) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        interleaved, lopsided = MOTMetrics(), MOTMetrics()
        for index, update in enumerate(frames()):
            if index % world_size == rank:
                interleaved.update(**update)
            if rank == 0:  # every frame on rank 0: rank 1 syncs empty states
                lopsided.update(**update)
        results[rank] = {
            "interleaved": {key: float(value) for key, value in interleaved.compute().items()},
            "lopsided": {key: float(value) for key, value in lopsided.compute().items()},
        }
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_process_gloo_sync_equals_single_process():
    import torch.multiprocessing as mp

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    manager = mp.Manager()
    results = manager.dict()
    mp.spawn(_ddp_worker, args=(2, port, results), nprocs=2, join=True)
    assert set(results.keys()) == {0, 1}
    for rank in (0, 1):
        for split in ("interleaved", "lopsided"):
            assert_expected({key: torch.tensor(value) for key, value in results[rank][split].items()})


def test_metric_logs_from_a_lightning_validation_loop(tmp_path):
    import lightning as L
    from torch.utils.data import DataLoader

    updates = list(frames())

    class Tracking(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(1, 1)
            self.tracking_metrics = MOTMetrics(prefix="val/")

        def validation_step(self, batch, batch_index):
            self.tracking_metrics.update(**updates[int(batch[0])])

        def on_validation_epoch_end(self) -> None:
            self.log_dict(self.tracking_metrics.compute())
            self.tracking_metrics.reset()

    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    loader = DataLoader(torch.arange(len(updates)), batch_size=1)
    trainer.validate(Tracking(), dataloaders=loader)
    logged = {key.replace("val/", "eval/"): value for key, value in trainer.callback_metrics.items()}
    assert_expected(logged)
