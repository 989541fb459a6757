"""Data: IDX files, the missing-data error, probe batches and the infinite sampler (protocol §1.1)."""
import gzip

import numpy as np
import pytest
import torch

from sparsebench import data


def _write_idx(path, array, compress):
    data.write_idx(path, array)
    if compress:
        path.write_bytes(gzip.compress(path.read_bytes()))


@pytest.fixture
def idx_root(tmp_path):
    rng = np.random.default_rng(0)
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for split, n, compress in (("train", 2500, True), ("t10k", 300, False)):
        ext = ".gz" if compress else ""
        _write_idx(raw / f"{split}-images-idx3-ubyte{ext}", rng.integers(0, 256, (n, 28, 28)), compress)
        _write_idx(raw / f"{split}-labels-idx1-ubyte{ext}", rng.integers(0, 10, n), compress)
    return tmp_path


def test_idx_files_in_torchvision_layout_are_read_and_scaled(idx_root):
    ds = data.load_idx_dataset("fashion_mnist", idx_root, download=False)
    assert ds.train_x.shape == (2500, 1, 28, 28) and ds.test_x.shape == (300, 1, 28, 28)
    assert ds.train_x.dtype == torch.float32 and 0 <= ds.train_x.min() and ds.train_x.max() <= 1
    raw = data.read_idx(idx_root / "FashionMNIST" / "raw" / "train-images-idx3-ubyte.gz")
    assert torch.equal(ds.train_x[7, 0] * 255, torch.from_numpy(raw[7].copy()).float())  # no normalisation
    assert ds.train_y.dtype == torch.int64


def test_missing_data_error_says_where_and_how(tmp_path):
    with pytest.raises(data.DataNotFoundError) as e:
        data.load_idx_dataset("mnist", tmp_path / "nowhere", download=False)
    msg = str(e.value)
    assert str(tmp_path / "nowhere" / "MNIST" / "raw") in msg and "synthetic" in msg and "\n" not in msg


def test_truncated_idx_is_rejected(tmp_path):
    p = tmp_path / "bad"
    p.write_bytes(bytes([0, 0, 8, 1]) + (100).to_bytes(4, "big") + bytes(10))
    with pytest.raises(ValueError, match="truncated"):
        data.read_idx(p)


def test_probe_batches_are_fixed_and_disjoint(dataset):
    (gx, gy), (rx, ry) = dataset.probe_batches(1000)
    assert torch.equal(gx, dataset.train_x[:1000]) and torch.equal(rx, dataset.train_x[1000:2000])
    assert len(gy) == len(ry) == 1000


def test_sampler_concatenates_permutations():
    s = data.InfiniteSampler(n=10, batch_size=4, seed=3)
    stream = torch.cat([s.batch(b) for b in range(5)])           # 20 indices = 2 epochs
    assert all(len(s.batch(b)) == 4 for b in range(5))
    assert sorted(stream[:10].tolist()) == list(range(10)) and sorted(stream[10:].tolist()) == list(range(10))
    assert not torch.equal(stream[:10], stream[10:])              # fresh permutation per epoch
    again = data.InfiniteSampler(10, 4, 3)
    assert torch.equal(again.batch(3), s.batch(3))                 # a pure function of (seed, b)
    assert not torch.equal(data.InfiniteSampler(10, 4, 4).batch(0), s.batch(0))


def test_synthetic_is_deterministic_and_mnist_shaped():
    a, b = data.synthetic(2000, 100), data.synthetic(2000, 100)
    assert torch.equal(a.train_x, b.train_x) and a.train_x.shape == (2000, 1, 28, 28)
    assert a.num_classes == 10 and 0 <= a.train_x.min() and a.train_x.max() <= 1


def test_prepare_writes_what_training_reads(idx_root, tmp_path):
    """The data stage: IDX files in <root>/<dataset>, found there by the loader, bytes unchanged."""
    from sparsebench.config import DataConfig
    source = data.load_idx_dataset("fashion_mnist", idx_root, download=False)
    info = data.prepare(DataConfig(dataset="fashion_mnist", root=str(idx_root), download=False),
                        tmp_path / "prepared" / "fashion_mnist")
    assert info["train"]["images"] == 2500 and sum(info["test"]["class_counts"]) == 300
    assert sorted(p.name for p in (tmp_path / "prepared" / "fashion_mnist").iterdir()) == [
        "info.json", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte",
        "train-images-idx3-ubyte", "train-labels-idx1-ubyte"]
    again = data.load_idx_dataset("fashion_mnist", tmp_path / "prepared", download=False)
    assert torch.equal(again.train_x, source.train_x) and torch.equal(again.test_y, source.test_y)
    assert not (tmp_path / "prepared" / "fashion_mnist.partial").exists()


def test_prepared_synthetic_set_is_exactly_the_generated_one(tmp_path):
    from sparsebench.config import DataConfig
    data.prepare(DataConfig(dataset="synthetic", synthetic_train=2000, synthetic_test=100), tmp_path / "synthetic")
    generated = data.synthetic(2000, 100)
    images = torch.from_numpy(data.read_idx(tmp_path / "synthetic" / "train-images-idx3-ubyte").copy())
    assert torch.equal(images.unsqueeze(1).float() / 255, generated.train_x)
