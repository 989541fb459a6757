"""ImageNet as an ImageFolder data source for the training loop (protocol §1.2), and a tiny test set.

Layout: ``<root>/train/<class>/<image>`` and ``<root>/val/<class>/<image>`` (JPEG, PNG, ...).
Training batch ``b`` is :class:`~sparsebench.data.InfiniteSampler` batch ``b``; under DDP rank ``r``
of ``W`` takes its contiguous ``B/W`` slice. The random crop and flip of position ``i`` of batch
``b`` are seeded by ``(seed, b, i)``, so a batch does not depend on workers, ``W`` or resuming.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision import transforms as T
from torchvision.datasets.folder import IMG_EXTENSIONS, ImageFolder, pil_loader

from . import seeds
from .config import ConfigError
from .data import DataNotFoundError, InfiniteSampler

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _layout(root) -> str:
    return f"expected the ImageFolder layout {root}/train/<class>/<image> and {root}/val/<class>/<image>"


def _scan(root: Path, split: str):
    """``(classes, relative paths as bytes, labels)`` of ``root/split`` via ImageFolder."""
    folder = root / split
    if not folder.is_dir():
        raise DataNotFoundError(f"{folder}: no such directory; {_layout(root)}")
    try:
        ds = ImageFolder(str(folder))
    except FileNotFoundError as e:
        empty = [d for d in sorted(folder.iterdir()) if d.is_dir()
                 and not any(f.name.lower().endswith(IMG_EXTENSIONS) for f in d.iterdir())]
        where = empty[0] if empty else folder
        raise DataNotFoundError(f"{where}: no images ({str(e).splitlines()[0]}); {_layout(root)}") from e
    prefix = len(str(folder)) + 1
    # numpy arrays, not lists of str: worker processes then share them (no refcount copy-on-write)
    paths = np.array([os.fsencode(p[prefix:]) for p, _ in ds.samples])
    return ds.classes, paths, np.array(ds.targets, dtype=np.int64)


class _Images(torch.utils.data.Dataset):
    """Images of one split. With ``seed`` set, keys are ``(index, b, i)`` and the transform's
    random draws (torchvision uses the global CPU generator) are seeded by ``(seed, b, i)``; the
    generator's state is restored afterwards, so ``workers=0`` leaves the trainer's RNG alone."""

    def __init__(self, folder: Path, paths, labels, transform, seed=None):
        self.folder, self.paths, self.labels = str(folder), paths, labels
        self.transform, self.seed = transform, seed

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, key):
        index = key if self.seed is None else key[0]
        image = pil_loader(os.path.join(self.folder, os.fsdecode(self.paths[index])))  # RGB
        if self.seed is None:
            return self.transform(image), int(self.labels[index])
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seeds.derive(self.seed, "augment", key[1], key[2]))
            return self.transform(image), int(self.labels[index])


class _TrainBatches:
    """Batch sampler: this rank's keys of global batches ``start, start + 1, ...`` (endless)."""

    def __init__(self, sampler: InfiniteSampler, lo: int, hi: int):
        self.sampler, self.lo, self.hi, self.start = sampler, lo, hi, 0

    def __iter__(self):
        b = self.start
        while True:
            indices = self.sampler.batch(b)[self.lo:self.hi].tolist()
            yield [(j, b, self.lo + k) for k, j in enumerate(indices)]
            b += 1


class _ListBatches:
    """Batch sampler over a list of index lists, replaceable between iterations."""

    def __init__(self):
        self.batches = []

    def __iter__(self):
        return iter(self.batches)


class ImageFolderSource:
    """ImageNet through torchvision ImageFolder, protocol §1.2, as one rank's data source.

    Train transform: RandomResizedCrop(image_size, scale (0.08, 1), ratio (3/4, 4/3), bicubic),
    horizontal flip, normalisation; eval: bicubic Resize(eval_resize), CenterCrop(image_size).
    The probes are ``2 * probe_size`` training images chosen once for all seeds (eval transform).
    With ``channels_last``, ``batch`` returns ``images.unsqueeze(0)`` of a channels_last 4-D
    tensor, so ``x[0]`` is channels_last; probes and test batches are channels_last 4-D tensors.
    """

    def __init__(self, root, batch_size: int, seed: int, *, image_size: int = 224, eval_resize: int = 256,
                 probe_size: int = 1000, rank: int = 0, world: int = 1, workers: int = 4,
                 device="cpu", channels_last: bool = False):
        if batch_size % world:
            raise ConfigError(f"optim.batch_size: {batch_size} is not divisible by the world size {world} "
                              f"(torchrun processes)")
        root = Path(root).expanduser()
        if not root.is_dir():
            raise DataNotFoundError(f"{root}: no such directory; {_layout(root)}")
        classes, train_paths, train_labels = _scan(root, "train")
        val_classes, val_paths, val_labels = _scan(root, "val")
        if val_classes != classes:
            diff = sorted(set(classes) ^ set(val_classes))
            raise ValueError(f"{root / 'val'}: class folders differ from {root / 'train'} (e.g. {diff[:5]})")
        self.name, self.in_channels, self.num_classes = f"imagefolder:{root}", 3, len(classes)
        self.train_size, self.test_size = len(train_paths), len(val_paths)
        if 2 * probe_size > self.train_size:
            raise ConfigError(f"log.probe_size: probe batches need {2 * probe_size} training images, "
                              f"{root / 'train'} has {self.train_size}")
        self.rank, self.world, self.probe_size = rank, world, probe_size
        self.device, self.channels_last = torch.device(device), channels_last
        normalise = [T.ToTensor(), T.Normalize(MEAN, STD)]
        bicubic = T.InterpolationMode.BICUBIC
        train_tf = T.Compose([T.RandomResizedCrop(image_size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3),
                                                  interpolation=bicubic), T.RandomHorizontalFlip(), *normalise])
        eval_tf = T.Compose([T.Resize(eval_resize, interpolation=bicubic), T.CenterCrop(image_size), *normalise])
        self._train = _Images(root / "train", train_paths, train_labels, train_tf, seed)
        self._train_eval = _Images(root / "train", train_paths, train_labels, eval_tf)
        self._val = _Images(root / "val", val_paths, val_labels, eval_tf)
        share = batch_size // world
        self._train_batches = _TrainBatches(InfiniteSampler(self.train_size, batch_size, seed),
                                            rank * share, (rank + 1) * share)
        self._val_batches = _ListBatches()
        self._loader_args = dict(num_workers=workers, pin_memory=self.device.type == "cuda",
                                 persistent_workers=workers > 0)
        self._train_loader = DataLoader(self._train, batch_sampler=self._train_batches, **self._loader_args)
        self._val_loader = DataLoader(self._val, batch_sampler=self._val_batches, **self._loader_args)
        self._iter, self._next, self._last, self._probes = None, None, None, None

    def _to_device(self, images, labels):
        fmt = torch.channels_last if self.channels_last else torch.preserve_format
        return (images.to(self.device, non_blocking=True, memory_format=fmt),
                labels.to(self.device, non_blocking=True))

    def batch(self, b: int):
        """This rank's share of global training batch ``b``: images (1, B/W, 3, S, S), labels (1, B/W).

        Consecutive ``b`` stream from the DataLoader; asking for the last ``b`` again returns it
        from a cache; any other ``b`` restarts the loader at ``b``.
        """
        if self._last is not None and self._last[0] == b:
            return self._last[1]
        if self._iter is None or b != self._next:
            self._train_batches.start = b
            self._iter = iter(self._train_loader)
        images, labels = self._to_device(*next(self._iter))
        self._next, self._last = b + 1, (b, (images.unsqueeze(0), labels.unsqueeze(0)))
        return self._last[1]

    def probes(self):
        """``((grad_x, grad_y), (grow_x, grow_y))``: this rank's share ``[rank::world]`` of the two fixed,
        disjoint sets of ``probe_size`` training images (protocol §1.1's probes), eval transform."""
        if self._probes is None:
            rng = np.random.default_rng(seeds.derive("probe"))
            chosen = rng.choice(self.train_size, 2 * self.probe_size, replace=False).tolist()
            sets = (chosen[:self.probe_size][self.rank::self.world], chosen[self.probe_size:][self.rank::self.world])
            loader = DataLoader(self._train_eval, batch_size=256, sampler=sets[0] + sets[1],
                                num_workers=self._loader_args["num_workers"],
                                pin_memory=self._loader_args["pin_memory"])
            x, y = (torch.cat(parts) for parts in zip(*loader))
            x, y = self._to_device(x, y)
            n = len(sets[0])
            self._probes = ((x[:n], y[:n]), (x[n:], y[n:]))
        return self._probes

    def test_batches(self, size: int):
        """Batches of at most ``size`` of this rank's val images (indices ``rank::world``), eval transform."""
        shard = list(range(self.rank, self.test_size, self.world))
        self._val_batches.batches = [shard[i:i + size] for i in range(0, len(shard), size)]
        for images, labels in self._val_loader:
            yield self._to_device(images, labels)


def make_tiny_imagefolder(root, classes: int = 4, train_per_class: int = 24, val_per_class: int = 8,
                          size: int = 40, seed: int = 0) -> Path:
    """Write a small learnable ImageFolder dataset of PNGs, ``<root>/{train,val}/class<k>/<i>.png``.

    Class ``k`` is stripes of a class-specific colour and angle, shifted by a random offset, on a
    noisy background; every third image is ``size x (size + 8)`` (W x H) and every eighth is
    grayscale, to exercise the resize and RGB paths of protocol §1.2. Deterministic in ``seed``.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    colours = rng.uniform(0.2, 1.0, (classes, 3))
    width = len(str(classes - 1))
    for split, count in (("train", train_per_class), ("val", val_per_class)):
        for k in range(classes):
            folder = root / split / f"class{k:0{width}d}"
            folder.mkdir(parents=True, exist_ok=True)
            angle = np.pi * k / classes
            for i in range(count):
                h, w = (size + 8, size) if i % 3 == 2 else (size, size)
                yy, xx = np.mgrid[:h, :w] + rng.integers(-size // 4, size // 4 + 1, 2)[:, None, None]
                stripes = np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / 8) > 0
                pixels = 0.3 * rng.random((h, w, 3)) + 0.7 * stripes[..., None] * colours[k]
                image = Image.fromarray((pixels.clip(0, 1) * 255).astype(np.uint8))
                (image.convert("L") if i % 8 == 7 else image).save(folder / f"{i}.png")
    return root
