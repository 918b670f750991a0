"""ShardStream splitting over (simulated) DDP ranks and DataLoader workers, and weighted mixing."""

import collections

import pytest
import torch
from helpers import synthetic_data
from phalp_lightning.datamodules.shard_streams import EpochDataLoader, ShardSource, ShardStream, expand_shards

synthetic_crop_shards = synthetic_data.synthetic_crop_shards
synthetic_tracklet_shards = synthetic_data.synthetic_tracklet_shards


def key_of(sample):
    return sample["__key__"]


def _keys(stream, num_workers, epochs=1):
    loader = EpochDataLoader(stream, batch_size=None, num_workers=num_workers)
    return [list(loader) for _ in range(epochs)]


def _all_keys(urls):
    stream = ShardStream([ShardSource(urls)], key_of, train=False)
    return list(stream)


@pytest.mark.parametrize("num_workers", [0, 2])
@pytest.mark.parametrize("which", ["many_shards", "few_shards"])
def test_validation_split_over_two_ranks_covers_every_sample_exactly_once(synthetic_crop_shards, num_workers, which):
    # 4 train shards of 6: one shard per slot with 2 ranks x 2 workers; the 2 val shards are fewer
    # than the slots, so the stream splits them sample by sample.
    urls = synthetic_crop_shards["train" if which == "many_shards" else "val"]["shards"]
    everything = _all_keys(urls)
    per_rank = []
    for rank in range(2):
        stream = ShardStream([ShardSource(urls)], key_of, train=False, rank=rank, world_size=2)
        per_rank.append(_keys(stream, num_workers)[0])
    assert set(per_rank[0]).isdisjoint(per_rank[1])
    assert sorted(per_rank[0] + per_rank[1]) == sorted(everything)
    assert abs(len(per_rank[0]) - len(per_rank[1])) <= 1  # balanced, so DDP ranks run the same steps


@pytest.mark.parametrize("num_workers", [0, 2])
def test_training_epoch_over_two_ranks_is_equal_length_disjoint_and_complete(synthetic_crop_shards, num_workers):
    urls = synthetic_crop_shards["train"]["shards"]
    everything = sorted(_all_keys(urls))
    per_rank = []
    for rank in range(2):
        stream = ShardStream([ShardSource(urls)], key_of, train=True, epoch_length=len(everything), batch_size=3,
                             num_workers=num_workers, shuffle_buffer=4, seed=1, rank=rank, world_size=2)
        epochs = _keys(stream, num_workers, epochs=2)
        assert len(epochs[0]) == len(stream) == len(epochs[1])
        per_rank.append(epochs)
    for epoch in range(2):
        first, second = per_rank[0][epoch], per_rank[1][epoch]
        assert len(first) == len(second) == len(everything) // 2
        assert len(set(first)) == len(first) and set(first).isdisjoint(second)
        assert sorted(first + second) == everything
    assert per_rank[0][0] != per_rank[0][1]  # reshuffled per epoch


def test_training_with_fewer_shards_than_slots_still_splits_disjointly(synthetic_crop_shards):
    urls = synthetic_crop_shards["val"]["shards"]  # 2 shards, 4 slots
    seen = []
    for rank in range(2):
        stream = ShardStream([ShardSource(urls)], key_of, train=True, epoch_length=8, batch_size=2, num_workers=2, rank=rank, world_size=2)
        seen.append(_keys(stream, 2)[0])
    assert set(seen[0]).isdisjoint(seen[1]) and len(seen[0]) == len(seen[1]) == 4


def test_weighted_mixing_follows_the_weights(synthetic_crop_shards, synthetic_tracklet_shards):
    crops = ShardSource(synthetic_crop_shards["train"]["shards"], weight=0.8, name="crops")
    tracks = ShardSource(synthetic_tracklet_shards["train"]["shards"], weight=0.2, name="tracks")
    stream = ShardStream([crops, tracks], lambda s: "meta.json" in s and "crop.png" in s, train=True, epoch_length=1000, seed=4)
    share = sum(list(stream)) / 1000
    assert 0.75 < share < 0.85


def test_a_slot_without_samples_is_an_error_not_an_endless_loop(synthetic_crop_shards):
    url = synthetic_crop_shards["val"]["shards"][:1]  # 6 samples
    stream = ShardStream([ShardSource(url, name="tiny")], key_of, train=True, epoch_length=10, rank=7, world_size=8)
    with pytest.raises(ValueError, match="'tiny' has no sample for rank/worker slot 7 of 8"):
        list(stream)


def test_expand_shards_accepts_braces_globs_and_lists(synthetic_crop_shards):
    entry = synthetic_crop_shards["train"]
    assert expand_shards(entry["pattern"]) == entry["shards"]
    folder = entry["shards"][0].rsplit("/", 1)[0]
    assert expand_shards(f"{folder}/train-*.tar") == entry["shards"]
    assert expand_shards([entry["shards"][1], entry["shards"][0]]) == [entry["shards"][1], entry["shards"][0]]


def test_tracklet_batches_from_workers_collate(synthetic_tracklet_shards):
    from phalp_lightning.datamodules.tracklets import TrackletDataModule

    module = TrackletDataModule(synthetic_tracklet_shards["train"]["pattern"], None, batch_size=4, num_workers=2, epoch_length=16)
    module.setup("fit")
    batches = list(module.train_dataloader())
    assert len(batches) == 4 and all(isinstance(batch["pose"], torch.Tensor) for batch in batches)
    counts = collections.Counter(tuple(batch["pose"].shape) for batch in batches)
    assert counts == {(4, 8, 229): 4}


@pytest.mark.slow
def test_real_ddp_two_cpu_processes_see_disjoint_equal_halves(synthetic_tracklet_shards, tmp_path):
    import lightning as L
    from helpers.ddp_probe import FingerprintRecorder
    from phalp_lightning.datamodules.tracklets import TrackletDataModule

    total = synthetic_tracklet_shards["train"]["num_samples"]
    module = TrackletDataModule(synthetic_tracklet_shards["train"]["pattern"], None, batch_size=4, epoch_length=total, shuffle_buffer=4)
    trainer = L.Trainer(strategy="ddp_spawn", accelerator="cpu", devices=2, max_epochs=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path, limit_val_batches=0)
    trainer.fit(FingerprintRecorder(str(tmp_path)), datamodule=module)
    seen = [(tmp_path / f"rank{rank}.txt").read_text().split() for rank in range(2)]
    assert len(seen[0]) == len(seen[1]) == total // 2
    assert set(seen[0]).isdisjoint(seen[1]) and len(set(seen[0]) | set(seen[1])) == total
