"""MNIST-format datasets, the fixed probe batches and the seeded infinite sampler (protocol §1.1).

Images are ``uint8 / 255`` in [0, 1], shape (N, 1, 28, 28), with no normalisation and
no augmentation. A dataset is held as one tensor on the training device and batches
are gathered by index, so there is no DataLoader in the hot path.
"""
from __future__ import annotations

import gzip
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .config import ConfigError

#: torchvision class name and a fixed place where a system package may have put the files
_SOURCES = {
    "mnist": ("MNIST", "/usr/share/datasets/mnist"),
    "fashion_mnist": ("FashionMNIST", "/usr/share/datasets/fashion-mnist"),
}
_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


class DataNotFoundError(FileNotFoundError):
    """The IDX files are not where we looked; the message says where and how to provide them."""


@dataclass
class Dataset:
    """A whole image-classification dataset as tensors (images float in [0,1], labels int64)."""
    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor

    @property
    def num_classes(self) -> int:
        return int(max(self.train_y.max(), self.test_y.max())) + 1

    @property
    def in_channels(self) -> int:
        return self.train_x.shape[1]

    def to(self, device) -> "Dataset":
        return Dataset(self.name, *(t.to(device) for t in
                                    (self.train_x, self.train_y, self.test_x, self.test_y)))

    def probe_batches(self, size: int = 1000):
        """The two fixed, disjoint training batches of protocol §1.1.

        Returns ``(grad_probe, grow_probe)``: images [0, size) for gradient-norm logging and
        [size, 2 size) for RigL's growth scores. Both are part of the training set.
        """
        if 2 * size > len(self.train_x):
            raise ValueError(f"probe batches need {2 * size} training images, dataset has {len(self.train_x)}")
        return ((self.train_x[:size], self.train_y[:size]),
                (self.train_x[size:2 * size], self.train_y[size:2 * size]))


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (MNIST's format), gzipped or not."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as fh:
        raw = fh.read()
    zero, dtype_code, ndim = raw[0:2], raw[2], raw[3]
    if zero != b"\x00\x00" or dtype_code != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    dims = np.frombuffer(raw, dtype=">u4", count=ndim, offset=4).astype(int)
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path}: truncated IDX file ({data.size} of {int(np.prod(dims))} values)")
    return data.reshape(*dims)


def _candidate_dirs(name: str, root: Path) -> list[Path]:
    tv_name, system_dir = _SOURCES[name]
    return [root / tv_name / "raw", root / name, root, Path(system_dir)]


def _find(directory: Path, stem: str):
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _locate(name: str, root: Path):
    for d in _candidate_dirs(name, root):
        found = {split: [_find(d, stem) for stem in stems] for split, stems in _FILES.items()}
        if all(all(found[s]) for s in found):
            return found
    return None


def _download(name: str, root: Path) -> None:
    import torchvision
    cls = getattr(torchvision.datasets, _SOURCES[name][0])
    for train in (True, False):
        cls(root=str(root), train=train, download=True)


def load_idx_dataset(name: str, root="data", download: bool = True) -> Dataset:
    """MNIST or Fashion-MNIST from IDX files, downloading through torchvision if allowed.

    Looks in ``<root>/<TorchvisionName>/raw`` (torchvision's layout), ``<root>/<name>``,
    ``<root>`` and the system directory (Debian's ``dataset-fashion-mnist`` installs
    ``/usr/share/datasets/fashion-mnist``). Files may be gzipped.
    """
    root = Path(root)
    files, reason = _locate(name, root), "download disabled"
    if files is None and download:
        try:
            _download(name, root)
            reason = "download finished but the files are not where expected"
        except Exception as e:  # no network, mirror down, checksum mismatch, ...
            reason = f"download failed ({e.__class__.__name__}: {str(e).splitlines()[0][:120]})"
        files = _locate(name, root)
    if files is None:
        looked = ", ".join(str(d) for d in _candidate_dirs(name, root))
        hint = ("apt-get install dataset-fashion-mnist, or " if name == "fashion_mnist" else "")
        raise DataNotFoundError(
            f"{name}: IDX files (train-images-idx3-ubyte[.gz] ...) not found in {looked}; {reason}. "
            f"Provide them: {hint}copy the four files into {root / _SOURCES[name][0] / 'raw'}, "
            f"or use dataset=fashion_mnist / synthetic")
    arrays = {}
    for split, (img_path, lbl_path) in files.items():
        images, labels = read_idx(img_path), read_idx(lbl_path)
        if len(images) != len(labels):
            raise ValueError(f"{img_path}: {len(images)} images but {len(labels)} labels")
        arrays[split] = (torch.from_numpy(images.copy()).unsqueeze(1).float().div_(255),
                         torch.from_numpy(labels.astype(np.int64)))
    return Dataset(name, *arrays["train"], *arrays["test"])


def synthetic(train: int = 4000, test: int = 1000, num_classes: int = 10, seed: int = 0) -> Dataset:
    """A learnable MNIST-shaped dataset for tests: per-class strokes on a black background.

    Each class is a fixed set of three random line segments (like a digit's strokes); an image is
    its class template shifted by up to 3 pixels, with random stroke intensity and a little noise,
    in [0, 1]. Deterministic in ``seed``; about as easy as MNIST for LeNet5.
    """
    g = torch.Generator().manual_seed(seed)
    templates = torch.zeros(num_classes, 28, 28)
    t = torch.linspace(0, 1, 40)
    for c in range(num_classes):
        for _ in range(3):
            (r0, c0, r1, c1) = (torch.rand(4, generator=g) * 16 + 6).tolist()
            rows = (r0 + (r1 - r0) * t).round().long()
            cols = (c0 + (c1 - c0) * t).round().long()
            templates[c, rows, cols] = 1.0
    templates = torch.nn.functional.max_pool2d(templates.unsqueeze(1), 3, stride=1, padding=1)

    def make(n):
        y = torch.randint(num_classes, (n,), generator=g)
        shifts = torch.randint(-3, 4, (n, 2), generator=g).tolist()
        x = torch.stack([torch.roll(templates[y[i]], shifts=tuple(shifts[i]), dims=(1, 2)) for i in range(n)])
        x = x * (0.6 + 0.4 * torch.rand(n, 1, 1, 1, generator=g)) + 0.1 * torch.rand(x.shape, generator=g)
        return x.clamp_(0, 1).mul_(255).round_().div_(255), y  # uint8 levels, like an IDX file

    return Dataset("synthetic", *make(train), *make(test))


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write an unsigned-byte IDX file (uncompressed)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    Path(path).write_bytes(header + array.tobytes())


def prepare(cfg, out_dir) -> dict:
    """Materialise the dataset of a DataConfig as four uncompressed IDX files in ``out_dir``.

    This is the pipeline's data stage: MNIST / Fashion-MNIST are located (or downloaded) as
    :func:`load` would, the synthetic set is generated; the files are written to
    ``<out_dir>.partial`` and renamed into place, with ``info.json`` (sizes, class counts).
    Training finds them because ``<root>/<dataset>`` is one of the places it looks.
    """
    ds = load(cfg)
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    info = {"dataset": cfg.dataset, "in_channels": ds.in_channels, "num_classes": ds.num_classes}
    for split, (x, y) in {"train": (ds.train_x, ds.train_y), "test": (ds.test_x, ds.test_y)}.items():
        images, labels = _FILES[split]
        write_idx(tmp / images, (x.squeeze(1) * 255).round().to(torch.uint8).numpy())
        write_idx(tmp / labels, y.to(torch.uint8).numpy())
        info[split] = {"images": len(x), "class_counts": torch.bincount(y).tolist()}
    (tmp / "info.json").write_text(json.dumps(info, indent=2))
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)
    return info


def load(cfg) -> Dataset:
    """The dataset a :class:`~sparsebench.config.DataConfig` names."""
    if cfg.dataset == "synthetic":
        return synthetic(cfg.synthetic_train, cfg.synthetic_test)
    return load_idx_dataset(cfg.dataset, os.path.expanduser(cfg.root), cfg.download)


class InfiniteSampler:
    """Seeded endless stream of index batches: independent permutations, concatenated.

    This is ``repeat().shuffle().batch(B)`` of protocol §1.1: batches cross epoch
    boundaries and all have exactly ``batch_size`` indices. Epoch ``e`` uses the
    permutation seeded by ``(seed, e)``, so batch ``b`` is a pure function of
    ``(seed, b)`` and resuming needs only the batch counter.
    """

    def __init__(self, n: int, batch_size: int, seed: int):
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self._epoch, self._perm = -1, None

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch != self._epoch:
            self._epoch = epoch
            self._perm = np.random.default_rng([self.seed, epoch]).permutation(self.n)
        return self._perm

    def batch(self, b: int) -> torch.Tensor:
        """Indices of batch number ``b`` (0-based)."""
        pos, need, parts = b * self.batch_size, self.batch_size, []
        while need:
            epoch, offset = divmod(pos, self.n)
            take = min(need, self.n - offset)
            parts.append(self._permutation(epoch)[offset:offset + take])
            pos, need = pos + take, need - take
        return torch.from_numpy(np.concatenate(parts))


class TensorSource:
    """An in-memory :class:`Dataset` as the training loop's data source, for S runs trained together.

    The data sit on the training device; batch ``b`` of every run is gathered with one index
    (run ``s`` follows its own :class:`InfiniteSampler`). Under DDP (``world`` processes) rank ``r``
    takes the ``r``-th contiguous share of each global batch and the ``r``-th strided share of the
    probe batches and of the test set, so the processes together see what one process would.
    """

    def __init__(self, dataset: Dataset, batch_size: int, seeds: list[int], probe_size: int = 1000,
                 device="cpu", rank: int = 0, world: int = 1):
        if batch_size % world:
            raise ConfigError(f"optim.batch_size: {batch_size} is not divisible by the world size {world} "
                              f"(torchrun processes)")
        self.data = dataset.to(device)
        self.name, self.in_channels, self.num_classes = dataset.name, dataset.in_channels, dataset.num_classes
        self.train_size, self.test_size = len(dataset.train_x), len(dataset.test_x)
        if 2 * probe_size > self.train_size:
            raise ConfigError(f"log.probe_size: probe batches need {2 * probe_size} training images, "
                              f"{dataset.name} has {self.train_size}")
        self.samplers = [InfiniteSampler(self.train_size, batch_size, s) for s in seeds]
        self.share = slice(rank * batch_size // world, (rank + 1) * batch_size // world)
        self.rank, self.world, self.probe_size, self.device = rank, world, probe_size, device

    def batch(self, b: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch ``b`` of every run (this process's share): images (S, B, ...), labels (S, B)."""
        idx = torch.stack([sampler.batch(b)[self.share] for sampler in self.samplers]).to(self.device)
        return self.data.train_x[idx], self.data.train_y[idx]

    def probes(self):
        """(gradient probe, growth probe), this process's share of each (protocol §1.1)."""
        return tuple((x[self.rank::self.world], y[self.rank::self.world])
                     for x, y in self.data.probe_batches(self.probe_size))

    def test_batches(self, size: int):
        """This process's share of the test set in batches of at most ``size`` images."""
        x, y = self.data.test_x[self.rank::self.world], self.data.test_y[self.rank::self.world]
        for i in range(0, len(x), size):
            yield x[i:i + size], y[i:i + size]
