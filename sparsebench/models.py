"""LeNet5 and the MLP of the MNIST experiments (protocol §2.1, §2.2); ImageNet VGG16 and ResNet-50 (§2.3, §2.4).

Which parameters are prunable is explicit: the weight of every ``Conv2d`` and
``Linear`` (first and last layer included), never a bias, minus the names a model
lists in ``dense_layers`` (empty here; the run config keeps the ResNet stem dense with it).
"""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

#: hidden sizes of the paper's networks and of their "small dense" counterparts
WIDTHS = {"lenet5": (6, 16, 120, 84), "mlp": (300, 100)}
SMALL_DENSE_WIDTHS = {"lenet5": (3, 3, 27, 20), "mlp": (8, 8)}
#: width multipliers of the ImageNet "small dense" networks: as many weights as 80% sparse (protocol §2.5)
SMALL_DENSE_MULTIPLIERS = {"vgg16": 0.44, "resnet50": 0.425}
#: VGG16 output channels per block (protocol §2.3); ResNet-50 Bottleneck blocks per stage (§2.4)
VGG16_BLOCKS = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))
RESNET50_BLOCKS = (3, 4, 6, 3)


class LeNet5(nn.Sequential):
    """conv5x5(c1) → pool → conv5x5(c2) → pool → fc(f1) → fc(f2) → fc(classes); valid convs, ReLU, biases.

    Each max-pool runs before its ReLU: the two commute (ReLU is monotone), and the ReLU then
    touches a quarter of the values.

    ``output_relu`` puts a ReLU on the logits, as the signal-propagation notebook does (protocol §11).
    """

    def __init__(self, width=WIDTHS["lenet5"], in_channels: int = 1, num_classes: int = 10,
                 output_relu: bool = False):
        c1, c2, f1, f2 = width
        layers = [
            ("conv1", nn.Conv2d(in_channels, c1, 5)), ("pool1", nn.MaxPool2d(2)), ("relu1", nn.ReLU()),
            ("conv2", nn.Conv2d(c1, c2, 5)), ("pool2", nn.MaxPool2d(2)), ("relu2", nn.ReLU()),
            ("flatten", nn.Flatten()),
            ("fc1", nn.Linear(c2 * 4 * 4, f1)), ("relu3", nn.ReLU()),
            ("fc2", nn.Linear(f1, f2)), ("relu4", nn.ReLU()),
            ("fc3", nn.Linear(f2, num_classes)),
        ]
        if output_relu:
            layers.append(("relu5", nn.ReLU()))
        super().__init__(OrderedDict(layers))


class MLP(nn.Sequential):
    """flatten(784) → fc(h1) → ReLU → fc(h2) → ReLU → fc(classes), with biases."""

    def __init__(self, width=WIDTHS["mlp"], in_channels: int = 1, num_classes: int = 10):
        h1, h2 = width
        super().__init__(OrderedDict([
            ("flatten", nn.Flatten()),
            ("fc1", nn.Linear(in_channels * 28 * 28, h1)), ("relu1", nn.ReLU()),
            ("fc2", nn.Linear(h1, h2)), ("relu2", nn.ReLU()),
            ("fc3", nn.Linear(h2, num_classes)),
        ]))


def _scaled(channels: int, width_multiplier: float) -> int:
    """A layer width times the multiplier (protocol §2.5), at least 1."""
    return max(1, round(channels * width_multiplier))


class VGG16(nn.Sequential):
    """ImageNet VGG16 as used (protocol §2.3): 13 bias-free 3x3 convs with ReLU, max-pool after blocks 1-4,
    global average pooling, then ``fc8``, a bias-free 1x1 conv classifier. No BN, dropout, fc6 or fc7.

    Every conv width is scaled by ``width_multiplier`` (§2.5).
    """

    def __init__(self, width_multiplier: float = 1.0, in_channels: int = 3, num_classes: int = 1000):
        layers = []
        for b, block in enumerate(VGG16_BLOCKS, 1):
            for i, channels in enumerate(block, 1):
                out = _scaled(channels, width_multiplier)
                layers += [(f"conv{b}_{i}", nn.Conv2d(in_channels, out, 3, padding=1, bias=False)),
                           (f"relu{b}_{i}", nn.ReLU())]
                in_channels = out
            if b < len(VGG16_BLOCKS):
                layers.append((f"pool{b}", nn.MaxPool2d(2)))
        layers += [("gap", nn.AdaptiveAvgPool2d(1)),
                   ("fc8", nn.Conv2d(in_channels, num_classes, 1, bias=False)),
                   ("flatten", nn.Flatten())]
        super().__init__(OrderedDict(layers))


def _resnet_stage(inplanes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
    """``blocks`` torchvision Bottlenecks; the first strides and gets a projection shortcut where shapes
    change (as torchvision). The last BN of each residual branch (``bn3``) starts at gamma 0 (protocol §2.4).
    """
    from torchvision.models.resnet import Bottleneck, conv1x1   # imported here: MNIST runs never need it

    out = planes * Bottleneck.expansion
    downsample = None
    if stride != 1 or inplanes != out:
        downsample = nn.Sequential(conv1x1(inplanes, out, stride), nn.BatchNorm2d(out))
    stage = nn.Sequential(Bottleneck(inplanes, planes, stride, downsample),
                          *(Bottleneck(out, planes) for _ in range(blocks - 1)))
    for block in stage:
        nn.init.zeros_(block.bn3.weight)
    return stage


class ResNet50(nn.Module):
    """ResNet-50 v1.5 as used (protocol §2.4), built from torchvision's ``Bottleneck`` (stride on the 3x3 conv).

    Every width is scaled by ``width_multiplier`` (§2.5); at 1.0 the ``state_dict`` is that of
    ``torchvision.models.resnet50()``. BN starts at gamma=1, beta=0, except the last BN of each
    residual branch (``bn3``), whose gamma starts at 0. Conv/FC weights keep PyTorch's defaults
    until ``init.initialize``, whose dense init of ``fc.weight`` is N(0, 0.01^2) via ``init_std``.
    """

    def __init__(self, width_multiplier: float = 1.0, in_channels: int = 3, num_classes: int = 1000):
        super().__init__()
        inplanes = _scaled(64, width_multiplier)
        self.conv1 = nn.Conv2d(in_channels, inplanes, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        for i, blocks in enumerate(RESNET50_BLOCKS):
            stage = _resnet_stage(inplanes, _scaled(64 * 2 ** i, width_multiplier), blocks, stride=1 if i == 0 else 2)
            self.add_module(f"layer{i + 1}", stage)
            inplanes = stage[-1].conv3.out_channels
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(inplanes, num_classes)
        self.init_std = {"fc.weight": 0.01}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


_BUILDERS = {"lenet5": LeNet5, "mlp": MLP, "vgg16": VGG16, "resnet50": ResNet50}


def build(name: str, width=None, in_channels: int = 1, num_classes: int = 10,
          width_multiplier: float = 1.0, **kwargs) -> nn.Module:
    """Build a network by name.

    ``width`` overrides the hidden sizes of lenet5/mlp (e.g. ``SMALL_DENSE_WIDTHS``);
    ``width_multiplier`` scales every width of vgg16/resnet50 (e.g. ``SMALL_DENSE_MULTIPLIERS``).
    """
    if name not in _BUILDERS:
        raise ValueError(f"model {name!r}: unknown; allowed: {', '.join(_BUILDERS)}")
    if name in WIDTHS:
        if width_multiplier != 1.0:
            raise ValueError(f"model {name!r}: takes width (hidden sizes), not width_multiplier")
        width = tuple(width) if width is not None else WIDTHS[name]
        if len(width) != len(WIDTHS[name]):
            raise ValueError(f"model {name!r}: width needs {len(WIDTHS[name])} sizes, got {list(width)}")
        model = _BUILDERS[name](width, in_channels=in_channels, num_classes=num_classes, **kwargs)
    else:
        if width is not None:
            raise ValueError(f"model {name!r}: takes width_multiplier, not width (hidden sizes)")
        if not width_multiplier > 0:
            raise ValueError(f"model {name!r}: width_multiplier must be > 0, got {width_multiplier}")
        model = _BUILDERS[name](width_multiplier, in_channels=in_channels, num_classes=num_classes, **kwargs)
    model.dense_layers = frozenset()
    return model


def prunable(model: nn.Module) -> dict[str, nn.Parameter]:
    """Name → weight of every Conv2d/Linear (biases excluded), except ``model.dense_layers``."""
    dense = getattr(model, "dense_layers", frozenset())
    out = {}
    for mod_name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            name = f"{mod_name}.weight" if mod_name else "weight"
            if name not in dense:
                out[name] = module.weight
    return out


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 2000):
    """Mean cross-entropy and top-1 accuracy of ``model`` on (x, y), in eval mode."""
    was_training = model.training
    model.eval()
    loss, correct = 0.0, 0
    for i in range(0, len(x), batch_size):
        logits = model(x[i:i + batch_size])
        loss += torch.nn.functional.cross_entropy(logits, y[i:i + batch_size], reduction="sum").item()
        correct += (logits.argmax(1) == y[i:i + batch_size]).sum().item()
    model.train(was_training)
    return loss / len(x), correct / len(x)
