"""The ImageFolder data source (protocol §1.2) on a tiny generated dataset."""
import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.datasets import ImageFolder

from sparsebench.data import DataNotFoundError, InfiniteSampler
from sparsebench.imagefolder import MEAN, STD, ImageFolderSource, make_tiny_imagefolder

SMALL = dict(image_size=32, eval_resize=36, probe_size=10, workers=0)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return make_tiny_imagefolder(tmp_path_factory.mktemp("tiny"), classes=4, train_per_class=24, val_per_class=8,
                                 size=40)


def source(root, batch_size=8, seed=0, **kw):
    return ImageFolderSource(root, batch_size, seed, **{**SMALL, **kw})


def unnormalise(x):
    return x * torch.tensor(STD).view(3, 1, 1) + torch.tensor(MEAN).view(3, 1, 1)


def test_tiny_dataset_is_deterministic_and_varied(root, tmp_path):
    again = make_tiny_imagefolder(tmp_path / "again", classes=4, train_per_class=24, val_per_class=8, size=40)
    files = sorted(p.relative_to(root) for p in root.rglob("*.png"))
    assert len(files) == 4 * 32 and files == sorted(p.relative_to(again) for p in again.rglob("*.png"))
    assert all((root / f).read_bytes() == (again / f).read_bytes() for f in files)
    images = [Image.open(root / f) for f in files]
    assert {im.size for im in images} == {(40, 40), (40, 48)} and {im.mode for im in images} == {"RGB", "L"}


def test_shapes_dtypes_and_normalisation(root):
    src = source(root)
    assert (src.name, src.in_channels, src.num_classes) == (f"imagefolder:{root}", 3, 4)
    assert (src.train_size, src.test_size) == (96, 32)
    x, y = src.batch(0)
    assert x.shape == (1, 8, 3, 32, 32) and x.dtype == torch.float32
    assert y.shape == (1, 8) and y.dtype == torch.int64 and 0 <= y.min() and y.max() < 4
    pixels = unnormalise(x[0])
    assert pixels.min() >= -1e-5 and pixels.max() <= 1 + 1e-5 and x.min() < 0 < x.max()
    (gx, gy), (hx, hy) = src.probes()
    assert gx.shape == hx.shape == (10, 3, 32, 32) and gy.shape == hy.shape == (10,) and gy.dtype == torch.int64
    batches = list(src.test_batches(12))
    assert [len(b[1]) for b in batches] == [12, 12, 8] and all(b[0].shape[1:] == (3, 32, 32) for b in batches)
    labels = torch.cat([b[1] for b in batches])
    assert labels.tolist() == ImageFolder(str(root / "val")).targets


def test_eval_transform_is_resize_centre_crop_normalise(root):
    src = source(root)
    images, _ = next(src.test_batches(32))
    path = ImageFolder(str(root / "val")).samples[2][0]    # a 40 x 48 image: resized to 36 x 43, crop top = round(5.5) = 6
    image = Image.open(path).convert("RGB").resize((36, 43), Image.BICUBIC).crop((2, 6, 34, 38))
    expected = torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255
    assert torch.allclose(unnormalise(images[2]), expected, atol=1e-5)


def test_batches_follow_the_infinite_sampler_and_seeds(root):
    targets = torch.tensor(ImageFolder(str(root / "train")).targets)
    for seed in (0, 1):
        src = source(root, seed=seed)
        sampler = InfiniteSampler(96, 8, seed)
        for b in range(14):                                   # crosses an epoch boundary (12 batches)
            assert src.batch(b)[1][0].tolist() == targets[sampler.batch(b)].tolist()
    orders = [torch.cat([source(root, seed=s).batch(b)[1][0] for b in range(4)]) for s in (0, 1)]
    assert not torch.equal(*orders)


def test_augmentation_differs_between_batches(tmp_path):
    root = make_tiny_imagefolder(tmp_path, classes=2, train_per_class=1, val_per_class=1, size=24)
    src = source(root, batch_size=2, image_size=16, eval_resize=20, probe_size=1)
    views = []
    for b in range(4):                                        # each batch holds both images
        x, y = src.batch(b)
        views.append(x[0][y[0].argsort()])
    assert all(not torch.equal(views[0][c], v[c]) for v in views[1:] for c in range(2))
    assert not torch.equal(src.batch(0)[0], src.batch(1)[0])


def test_same_batches_for_any_workers_world_and_resume(root):
    reference = source(root)
    ref = [reference.batch(b) for b in range(6)]
    parallel = source(root, workers=2)
    for b in range(4):
        assert all(torch.equal(u, v) for u, v in zip(parallel.batch(b), ref[b]))
    again = parallel.batch(1)                                  # restarts the persistent workers at 1
    assert all(torch.equal(u, v) for u, v in zip(again, ref[1]))
    assert all(torch.equal(u, v) for u, v in zip(parallel.batch(2), ref[2]))
    ranks = [source(root, rank=r, world=2) for r in range(2)]
    for b in (0, 1, 5):
        shares = [r.batch(b) for r in ranks]
        assert shares[0][0].shape == (1, 4, 3, 32, 32)
        assert torch.equal(torch.cat([s[0] for s in shares], 1), ref[b][0])
        assert torch.equal(torch.cat([s[1] for s in shares], 1), ref[b][1])
    fresh = source(root)
    assert all(torch.equal(u, v) for u, v in zip(fresh.batch(5), ref[5]))
    assert fresh.batch(5) is fresh.batch(5)                   # asking again returns the cached batch
    assert all(torch.equal(u, v) for u, v in zip(fresh.batch(2), ref[2]))


def test_channels_last(root):
    x, y = source(root, channels_last=True).batch(3)
    assert x[0].is_contiguous(memory_format=torch.channels_last) and y.shape == (1, 8)
    plain = source(root).batch(3)[0]
    assert torch.equal(x, plain)
    conv = torch.nn.Conv2d(3, 4, 3)
    assert torch.allclose(torch.func.vmap(conv)(x), conv(plain[0]).unsqueeze(0), atol=1e-5)


def test_val_shards_are_disjoint_and_cover_val(root):
    full = torch.cat([x for x, _ in source(root).test_batches(32)])
    shards = [torch.cat([x for x, _ in source(root, batch_size=6, rank=r, world=3).test_batches(5)])
              for r in range(3)]
    assert sum(len(s) for s in shards) == len(full) == 32
    assert all(torch.equal(shards[r], full[r::3]) for r in range(3))
    parallel = source(root, batch_size=6, rank=1, world=3, workers=2)
    next(parallel.test_batches(4))                             # abandoned: the next pass starts afresh
    for _ in range(2):
        assert torch.equal(torch.cat([x for x, _ in parallel.test_batches(4)]), shards[1])


def test_probes_are_fixed_disjoint_and_sharded(root):
    src = source(root)
    (gx, gy), (hx, hy) = src.probes()
    assert src.probes()[0][0] is gx
    flat = torch.cat([gx, hx]).flatten(1)
    assert len(torch.unique(flat, dim=0)) == 20                # 20 distinct images
    other = source(root, seed=7).probes()                      # the same for every seed
    assert torch.equal(other[0][0], gx) and torch.equal(other[1][1], hy)
    for r in range(2):
        (rx, ry), (sx, sy) = source(root, rank=r, world=2, workers=1).probes()
        assert torch.equal(rx, gx[r::2]) and torch.equal(ry, gy[r::2]) and torch.equal(sx, hx[r::2])


def test_errors(root, tmp_path):
    with pytest.raises(DataNotFoundError, match="ImageFolder layout"):
        source(tmp_path / "nowhere")
    (tmp_path / "partial" / "train" / "a").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "partial" / "train" / "a" / "0.png")
    with pytest.raises(DataNotFoundError, match=r"partial/val: no such directory"):
        source(tmp_path / "partial")
    (tmp_path / "partial" / "val" / "a").mkdir(parents=True)
    with pytest.raises(DataNotFoundError, match=r"val/a: no images"):
        source(tmp_path / "partial")
    Image.new("RGB", (8, 8)).save(tmp_path / "partial" / "val" / "a" / "0.png")
    (tmp_path / "partial" / "val" / "b").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "partial" / "val" / "b" / "0.png")
    with pytest.raises(ValueError, match=r"partial/val: class folders differ"):
        source(tmp_path / "partial", probe_size=0)
    with pytest.raises(ValueError, match="not divisible by the world size"):
        source(root, batch_size=9, world=2)
    with pytest.raises(ValueError, match="probe batches need"):
        source(root, probe_size=50)


def test_tiny_dataset_is_learnable(root):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, stride=2), torch.nn.ReLU(),
                                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, 4))
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    src = source(root, batch_size=16)
    for b in range(25):
        x, y = src.batch(b)
        loss = torch.nn.functional.cross_entropy(model(x[0]), y[0])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        correct = sum((model(x).argmax(1) == y).sum().item() for x, y in src.test_batches(32))
    assert correct / src.test_size > 0.75                     # chance is 0.25
