"""ImageNet networks: VGG16 (protocol §2.3), ResNet-50 (§2.4), their small-dense widths (§2.5) and init (§6.1)."""
import math

import pytest
import torch
import torchvision
from torch import nn

from sparsebench import init, masks, models

TINY = 1 / 16


def _weights(model) -> dict[str, int]:
    """Numel of every Conv2d/Linear weight (``build`` leaves ``dense_layers`` empty)."""
    return {k: w.numel() for k, w in models.prunable(model).items()}


def _meta(name, **kw):
    """A shape-only network: no memory, no init cost."""
    with torch.device("meta"):
        return models.build(name, in_channels=3, num_classes=1000, **kw)


def test_vgg16_layout_and_weight_count():
    m = _meta("vgg16")
    names = [n for n, _ in m.named_children()]
    blocks = [(1, 2), (2, 2), (3, 3), (4, 3), (5, 3)]
    expected = [x for b, n in blocks for i in range(1, n + 1) for x in (f"conv{b}_{i}", f"relu{b}_{i}")]
    for b in range(1, 5):                                   # a pool after blocks 1-4, none after block 5
        expected.insert(expected.index(f"relu{b}_{blocks[b - 1][1]}") + 1, f"pool{b}")
    assert names == expected + ["gap", "fc8", "flatten"]
    assert sum(_weights(m).values()) == 15_222_464
    assert all(n.endswith("weight") and p.dim() == 4 for n, p in m.named_parameters())   # no bias, no BN
    assert not any(isinstance(x, (nn.BatchNorm2d, nn.Dropout, nn.Linear)) for x in m.modules())
    assert m.fc8.kernel_size == (1, 1) and tuple(m.fc8.weight.shape) == (1000, 512, 1, 1)
    assert isinstance(m.gap, nn.AdaptiveAvgPool2d) and isinstance(m.flatten, nn.Flatten)


def test_resnet50_matches_torchvision_keys_shapes_and_outputs():
    ours, ref = models.build("resnet50", in_channels=3, num_classes=1000), torchvision.models.resnet50()
    ref_state = ref.state_dict()
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in ref_state.items()}
    assert list(ours.state_dict()) == list(ref_state)
    assert sum(_weights(ours).values()) == 25_502_912
    ours.load_state_dict(ref_state)
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(ours.eval()(x), ref.eval()(x))


def test_resnet50_bn_starts_at_one_zero_with_zero_bn3_gamma():
    m = models.build("resnet50", in_channels=3, num_classes=10, width_multiplier=TINY)
    for name, bn in m.named_modules():
        if isinstance(bn, nn.BatchNorm2d):
            assert (bn.bias == 0).all() and bn.eps == 1e-5 and bn.momentum == 0.1
            assert (bn.weight == (0.0 if name.endswith("bn3") else 1.0)).all(), name
    assert sum(name.endswith("bn3") for name, _ in m.named_modules()) == 16
    assert [n for n, x in m.named_modules() if isinstance(x, (nn.Conv2d, nn.Linear)) and x.bias is not None] == ["fc"]


@pytest.mark.parametrize("name", ["vgg16", "resnet50"])
@pytest.mark.parametrize("in_channels", [3, 1])
def test_tiny_forward_shapes(name, in_channels):
    m = models.build(name, in_channels=in_channels, num_classes=10, width_multiplier=TINY)
    m.train()                                               # batch statistics: needs a batch of 2
    assert m(torch.randn(2, in_channels, 32, 32)).shape == (2, 10)
    assert m.eval()(torch.randn(1, in_channels, 32, 32)).shape == (1, 10)
    assert m.dense_layers == frozenset()


def test_width_multiplier_scales_every_layer():
    vgg = _meta("vgg16", width_multiplier=0.25)
    assert [c.out_channels for n, c in vgg.named_children() if n.startswith("conv")] == \
        [16, 16, 32, 32, 64, 64, 64, 128, 128, 128, 128, 128, 128]
    res = _meta("resnet50", width_multiplier=0.25)
    assert res.conv1.out_channels == 16 and res.fc.in_features == 512
    assert [getattr(res, f"layer{i}")[0].conv2.out_channels for i in range(1, 5)] == [16, 32, 64, 128]


def test_small_dense_widths_match_80_percent_sparse_counts():
    """The §2.5 targets: VGG16 every layer 80% sparse; ResNet-50 the same but the 7x7 stem dense (§2.4)."""
    vgg = _weights(_meta("vgg16"))
    assert sum(masks.active_count(n, 0.8) for n in vgg.values()) == 3_044_493
    res = _weights(_meta("resnet50"))
    assert res["conv1.weight"] + sum(masks.active_count(n, 0.8) for k, n in res.items()
                                     if k != "conv1.weight") == 5_108_110
    for name, target in (("vgg16", 3_044_493), ("resnet50", 5_108_110)):
        small = sum(_weights(_meta(name, width_multiplier=models.SMALL_DENSE_MULTIPLIERS[name])).values())
        assert small == pytest.approx(target, rel=0.02), name


def test_width_arguments_are_checked():
    with pytest.raises(ValueError, match="'vgg16'.*width_multiplier"):
        models.build("vgg16", (64, 128), in_channels=3)
    with pytest.raises(ValueError, match="'resnet50'.*> 0"):
        models.build("resnet50", in_channels=3, width_multiplier=0.0)
    with pytest.raises(ValueError, match="'lenet5'.*width"):
        models.build("lenet5", width_multiplier=0.5)


def _std(w):
    return float(w.detach().std())


def test_initialize_resnet50_fc_is_normal_001_and_convs_follow_the_family():
    m = models.build("resnet50", in_channels=3, num_classes=1000, width_multiplier=TINY)
    init.initialize(m, "dense", dense="lecun_normal", generator=torch.Generator().manual_seed(0))
    assert _std(m.fc.weight) == pytest.approx(0.01, rel=0.02) and (m.fc.bias == 0).all()
    assert m.fc.weight.abs().max() > 3 * 0.01               # a plain normal, not truncated at 2 sigma
    conv = m.layer4[0].conv2.weight                         # 3x3, lecun: truncated normal, variance 1/fan_in
    fan_in = conv.shape[1] * 9
    assert _std(conv) == pytest.approx(math.sqrt(1 / fan_in), rel=0.05)
    assert conv.abs().max() <= 2 * math.sqrt(1 / fan_in) / 0.87962566103423978 + 1e-6
    for name, bn in m.named_modules():                      # BN untouched
        if isinstance(bn, nn.BatchNorm2d):
            assert (bn.weight == (0.0 if name.endswith("bn3") else 1.0)).all() and (bn.bias == 0).all()


def test_initialize_sparse_fc_liu_scales_the_std_and_ours_ignores_it():
    m = models.build("resnet50", in_channels=3, num_classes=1000, width_multiplier=TINY)
    g = torch.Generator().manual_seed(1)
    shape = tuple(m.fc.weight.shape)
    masks.attach(m, {"fc.weight": masks.random_mask(shape, masks.active_count(math.prod(shape), 0.8), g)})
    active = m.fc.weight_mask > 0
    init.initialize(m, "liu", dense="lecun_normal", generator=g)
    assert _std(m.fc.weight[active]) == pytest.approx(0.01 / math.sqrt(0.2), rel=0.03)
    init.initialize(m, "ours", scale=2.0, generator=g)      # per-unit N(0, 2 / fan_in), fan_in = 0.2 * 128
    assert _std(m.fc.weight[active]) == pytest.approx(math.sqrt(2 / (0.2 * shape[1])), rel=0.05)
    assert (m.fc.weight[~active] == 0).all()
