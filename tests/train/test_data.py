"""`EpochBatches` / `make_loader`: determinism, coverage, resume, balancing, DDP, locality, labels."""

from __future__ import annotations

import math
import pickle
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from doodle.data.store import PrepareConfig, load_manifest, prepare, store_files
from doodle.data.table import table_to_drawings
from doodle.preprocess import InputConfig, Preprocessor
from doodle.render.augment import AugmentConfig
from doodle.train.data import EpochBatches, class_counts, make_loader

# 6 classes of the committed sample: its cat_2k holds the first 800 of the file's 1,900 cats, ~630 train
# drawings; the others 400 drawings each, ~300-340 in train (see test_store_shape). 2,243 train rows.
FILES = ["airplane", "camera", "cat_2k", "eye", "map", "television"]
ROW_GROUP = 50  # small row groups: 47 of them in train, so windows hold several
B = 64


@pytest.fixture(scope="module")
def store(quickdraw: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("train_data") / "store"
    files = [quickdraw / "simplified" / f"JulienDuranleau_{name}.ndjson" for name in FILES]
    prepare(files, out, PrepareConfig(val_fraction=0.2, progress=False, workers=1, row_group_size=ROW_GROUP,
                                      shards=3))
    return out


def store_rows(store: Path, split: str) -> pa.Table:
    """key_id, word, label of a split, in store order (read independently of the loader)."""
    return pa.concat_tables(pq.read_table(p, columns=["key_id", "word", "label"]) for p in store_files(store, split))


def keys_of(batches) -> np.ndarray:
    return np.concatenate([b["key_id"] for b in batches]) if batches else np.zeros(0, np.int64)


def all_batches(ds: EpochBatches) -> list[dict]:
    return [ds[i] for i in range(len(ds))]


def as_int64(keys) -> np.ndarray:
    return np.asarray(keys, np.uint64).view(np.int64)


def test_store_shape(store: Path):
    m = load_manifest(store)
    train = m["per_class"]["train"]
    assert 600 < train["cat"] < 660 and all(250 < n < 350 for c, n in train.items() if c != "cat")
    groups = sum(pq.ParquetFile(p).metadata.num_row_groups for p in store_files(store, "train"))
    assert groups > 40
    np.testing.assert_array_equal(class_counts(store, "train"), [train[c] for c in m["classes"]])
    labels = store_rows(store, "train").column("label").to_numpy()
    np.testing.assert_array_equal(class_counts(store, "train"), np.bincount(labels, minlength=len(m["classes"])))


def test_epoch_covers_every_train_row_once(store: Path):
    rows = store_rows(store, "train")
    n = rows.num_rows
    ds = EpochBatches(store, "train", batch_size=B, seed=1, epoch=0)
    full = EpochBatches(store, "train", batch_size=B, seed=1, epoch=0, drop_last=False)
    assert len(ds) == n // B and len(full) == math.ceil(n // B + (n % B > 0))
    batches, full_batches = all_batches(ds), all_batches(full)
    assert all(len(b["label"]) == B for b in batches)
    assert len(full_batches[-1]["label"]) == n - (n // B) * B  # the tail, partial
    # drop_last only drops the tail: the same plan
    np.testing.assert_array_equal(keys_of(batches), keys_of(full_batches[: len(batches)]))
    keys = keys_of(full_batches)
    assert len(keys) == n and len(np.unique(keys)) == n
    assert set(keys.tolist()) == set(as_int64(rows.column("key_id").to_numpy()).tolist())
    # shuffled: not store order, and classes mixed within the first batch
    assert not np.array_equal(keys, as_int64(rows.column("key_id").to_numpy()))
    assert len(np.unique(batches[0]["label"])) >= 4


def test_labels_match_words(store: Path):
    classes = load_manifest(store)["classes"]
    rows = store_rows(store, "train")
    word_of = dict(zip(as_int64(rows.column("key_id").to_numpy()).tolist(), rows.column("word").to_pylist(),
                       strict=True))
    ds = EpochBatches(store, "train", batch_size=B, seed=0, epoch=2, drop_last=False)
    for b in all_batches(ds):
        assert b["label"].dtype == np.int64 and b["key_id"].dtype == np.int64
        assert [classes[lab] for lab in b["label"]] == [word_of[k] for k in b["key_id"].tolist()]


def test_validation_every_row_once_in_store_order(store: Path):
    rows = store_rows(store, "val")
    ds = EpochBatches(store, "val", batch_size=B, shuffle=False, drop_last=False)
    batches = all_batches(ds)
    assert len(ds) == math.ceil(rows.num_rows / B)
    np.testing.assert_array_equal(keys_of(batches), as_int64(rows.column("key_id").to_numpy()))
    np.testing.assert_array_equal(np.concatenate([b["label"] for b in batches]), rows.column("label").to_numpy())


def test_deterministic_across_objects_order_and_epochs(store: Path):
    a = EpochBatches(store, "train", batch_size=B, seed=5, epoch=3)
    b = EpochBatches(store, "train", batch_size=B, seed=5, epoch=3)
    seq = all_batches(a)
    # b computed backwards (every batch a cache miss, windows re-read): same batches
    backwards = [b[i] for i in reversed(range(len(b)))][::-1]
    for x, y in zip(seq, backwards, strict=True):
        np.testing.assert_array_equal(x["key_id"], y["key_id"])
    # a pickled copy (what a spawned worker gets) carries the plan, not the columns
    c = pickle.loads(pickle.dumps(a))
    assert c._labels is None and c._cached is None
    np.testing.assert_array_equal(c[7]["key_id"], seq[7]["key_id"])
    # other epochs and seeds: other orders of the same rows
    other_epoch = keys_of(all_batches(EpochBatches(store, "train", batch_size=B, seed=5, epoch=4)))
    other_seed = keys_of(all_batches(EpochBatches(store, "train", batch_size=B, seed=6, epoch=3)))
    for other in (other_epoch, other_seed):
        assert not np.array_equal(other, keys_of(seq))
        assert np.mean(other == keys_of(seq)) < 0.05
    # set_epoch re-plans exactly like a fresh object
    a.set_epoch(4)
    np.testing.assert_array_equal(keys_of(all_batches(a)), other_epoch)


def test_augmentation_rng_per_global_batch(store: Path):
    pre = Preprocessor(InputConfig(size=32))
    aug = AugmentConfig(rotate=30.0, jitter=0.01)
    ds = EpochBatches(store, "train", preprocess=pre, batch_size=B, seed=2, epoch=1, augment=aug,
                      rank=1, world_size=2)
    for i in (0, 3):
        batch = ds[i]
        g = 2 * i + 1
        want = pre(table_to_drawings(ds.batch_rows(i)), augment=aug, rng=np.random.default_rng([2, 1, g]))
        assert batch["image"].dtype == np.uint8 and batch["image"].shape == (B, 3, 32, 32)
        np.testing.assert_array_equal(batch["image"], want["image"])
    # augmentation really is on: another epoch's RNG changes the images of the same rows
    plain = pre(table_to_drawings(ds.batch_rows(0)))
    assert not np.array_equal(ds[0]["image"], plain["image"])


def to_numpy(batch: dict) -> dict:
    return {k: v.numpy() for k, v in batch.items()}


def assert_same_batches(got: list[dict], want: list[dict]):
    assert len(got) == len(want)
    for x, y in zip(got, want, strict=True):
        assert x.keys() == y.keys()
        for k in x:
            np.testing.assert_array_equal(x[k], y[k], err_msg=k)


def test_loader_workers_and_resume(store: Path):
    import torch

    def make():
        return EpochBatches(store, "train", preprocess=Preprocessor(InputConfig(size=32)), batch_size=B, seed=0,
                            epoch=3, augment=AugmentConfig(), limit=10 * B + 17)

    ds = make()
    assert len(ds) == 10
    want = all_batches(ds)
    first = next(iter(make_loader(make(), workers=0)))
    assert first["image"].dtype == torch.uint8 and first["label"].dtype == torch.int64
    assert first["key_id"].dtype == torch.int64
    assert_same_batches([to_numpy(b) for b in make_loader(make(), workers=0)], want)
    assert_same_batches([to_numpy(b) for b in make_loader(make(), workers=2)], want)
    # resume: a fresh loader started at k continues exactly
    assert_same_batches([to_numpy(b) for b in make_loader(make(), workers=2, start=6)], want[6:])
    assert list(make_loader(make(), workers=0, start=10)) == []
    with pytest.raises(ValueError):
        make_loader(make(), start=11)


def test_limit_takes_the_plan_prefix(store: Path):
    full = keys_of(all_batches(EpochBatches(store, "train", batch_size=B, seed=3, epoch=0, drop_last=False)))
    ds = EpochBatches(store, "train", batch_size=B, seed=3, epoch=0, limit=500)
    assert ds.rows == 500 and len(ds) == 500 // B
    np.testing.assert_array_equal(keys_of(all_batches(ds)), full[: (500 // B) * B])


def test_ddp_ranks_disjoint_equal_and_cover_the_epoch(store: Path):
    batch = 96
    single = all_batches(EpochBatches(store, "train", batch_size=batch, seed=4, epoch=2))
    ranks = [EpochBatches(store, "train", batch_size=batch, seed=4, epoch=2, rank=r, world_size=2) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == len(single) // 2
    assert len(single) % 2 == 1  # 23 global batches: one dropped so ranks stay in step
    per_rank = [all_batches(ds) for ds in ranks]
    k0, k1 = keys_of(per_rank[0]), keys_of(per_rank[1])
    assert not set(k0.tolist()) & set(k1.tolist())
    assert set(k0.tolist()) | set(k1.tolist()) == set(keys_of(single[: 2 * len(ranks[0])]).tolist())
    for r in (0, 1):  # rank r's batch i is global batch 2i + r
        for i, b in enumerate(per_rank[r]):
            np.testing.assert_array_equal(b["key_id"], single[2 * i + r]["key_id"])
    # validation on 3 ranks: every row once, equal counts (a rank past the end gets an empty batch)
    val = store_rows(store, "val").num_rows
    vranks = [EpochBatches(store, "val", batch_size=batch, shuffle=False, drop_last=False, rank=r, world_size=3)
              for r in range(3)]
    assert len({len(ds) for ds in vranks}) == 1
    vkeys = np.concatenate([keys_of(all_batches(ds)) for ds in vranks])
    assert len(vkeys) == val and len(np.unique(vkeys)) == val


def test_balanced_epochs(store: Path):
    classes = load_manifest(store)["classes"]
    cat = classes.index("cat")
    counts = class_counts(store, "train")
    block = 350
    k = math.ceil(counts[cat] / block)  # 2 blocks of ~316
    mean = counts[cat] / k
    # block sizes are binomial(n, 1/k): allow 5 standard deviations around n / k
    tol = 5 * math.sqrt(counts[cat] * (1 / k) * (1 - 1 / k))
    rows = store_rows(store, "train")
    keys_by_class = {c: set(as_int64(rows.filter(pc.equal(rows.column("label"), c)).column("key_id").to_numpy())
                            .tolist()) for c in range(len(classes))}
    cat_sets = []
    for epoch in range(6):
        ds = EpochBatches(store, "train", batch_size=B, seed=0, epoch=epoch, balanced_block=block, drop_last=False)
        batches = all_batches(ds)
        keys, labels = keys_of(batches), np.concatenate([b["label"] for b in batches])
        assert len(np.unique(keys)) == len(keys) == ds.rows
        per_class = np.bincount(labels, minlength=len(classes))
        assert abs(per_class[cat] - mean) <= tol and per_class[cat] <= block + tol
        for c in range(len(classes)):
            if c != cat:  # smaller than the block: everything, every epoch
                assert set(keys[labels == c].tolist()) == keys_by_class[c]
        cat_set = frozenset(keys[labels == cat].tolist())
        assert cat_set <= keys_by_class[cat]
        cat_sets.append(cat_set)
        # drop_last version: same plan, tail dropped, len known before reading batches
        dropped = EpochBatches(store, "train", batch_size=B, seed=0, epoch=epoch, balanced_block=block)
        assert len(dropped) == ds.rows // B
    distinct = set(cat_sets)
    assert len(distinct) >= 2  # blocks change across epochs
    for a in distinct:  # and blocks are a partition: two epochs share all their cats or none
        for b in distinct:
            assert a == b or not a & b


def test_unlabelled_rows_never_in_batches(store: Path, tmp_path: Path):
    copy = tmp_path / "store"
    shutil.copytree(store, copy)
    shard = store_files(copy, "train")[0]
    table = pq.read_table(shard)
    labels = table.column("label").to_numpy().copy()
    labels[:30] = -1
    table = table.set_column(table.schema.get_field_index("label"), table.schema.field("label"),
                             pa.array(labels, pa.int32()))
    pq.write_table(table, shard, row_group_size=ROW_GROUP)
    unlabelled = set(as_int64(table.column("key_id").to_numpy()[:30]).tolist())
    n = store_rows(copy, "train").num_rows
    for kwargs in ({}, {"balanced_block": 350}):
        ds = EpochBatches(copy, "train", batch_size=B, drop_last=False, **kwargs)
        keys = keys_of(all_batches(ds))
        assert not unlabelled & set(keys.tolist())
        assert len(np.unique(keys)) == len(keys)
        if not kwargs:
            assert len(keys) == n - 30


def test_locality_each_row_group_read_once_per_worker(store: Path):
    ds = EpochBatches(store, "train", batch_size=B, seed=0, epoch=1, window=4)
    n_groups = len(ds.groups)
    workers = [pickle.loads(pickle.dumps(ds)) for _ in range(3)]  # what DataLoader workers get
    for i in range(len(ds)):  # DataLoader hands batch i to worker i % workers
        workers[i % 3][i]
    for w in workers:
        assert max(w.row_group_reads.values()) == 1
        assert len(w.row_group_reads) >= n_groups - 2 * ds.window  # the whole epoch, bar the dropped tail
    # a batch needs only its windows: the first batch reads one window of row groups, not the store
    fresh = EpochBatches(store, "train", batch_size=B, seed=0, epoch=1, window=4)
    fresh[0]
    assert sum(fresh.row_group_reads.values()) <= 2 * fresh.window


def test_rows_shuffled_within_windows_and_windows_per_epoch(store: Path):
    rows = store_rows(store, "train")
    position = {k: i for i, k in enumerate(as_int64(rows.column("key_id").to_numpy()).tolist())}
    ds = EpochBatches(store, "train", batch_size=B, seed=0, epoch=0)
    assert ds._labels is None and not ds.row_group_reads  # planning read metadata only, no rows
    pos = np.array([position[k] for k in ds[0]["key_id"].tolist()])
    assert np.mean(np.abs(np.diff(pos)) == 1) < 0.2  # not runs of store order
    first_groups = []
    for epoch in range(3):
        fresh = EpochBatches(store, "train", batch_size=B, seed=0, epoch=epoch)
        fresh[0]
        first_groups.append(frozenset(fresh.row_group_reads))
    assert len(set(first_groups)) == 3  # each epoch starts from other row groups
