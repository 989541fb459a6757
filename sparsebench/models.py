"""LeNet5 and the MLP of the MNIST experiments (protocol §2.1, §2.2).

Which parameters are prunable is explicit: the weight of every ``Conv2d`` and
``Linear`` (first and last layer included), never a bias, minus the names a model
lists in ``dense_layers`` (empty here; the ResNet stem uses it later).
"""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

#: hidden sizes of the paper's networks and of their "small dense" counterparts
WIDTHS = {"lenet5": (6, 16, 120, 84), "mlp": (300, 100)}
SMALL_DENSE_WIDTHS = {"lenet5": (3, 3, 27, 20), "mlp": (8, 8)}


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


_BUILDERS = {"lenet5": LeNet5, "mlp": MLP}


def build(name: str, width=None, in_channels: int = 1, num_classes: int = 10, **kwargs) -> nn.Module:
    """Build a network by name; ``width`` overrides its hidden sizes (e.g. ``SMALL_DENSE_WIDTHS``)."""
    if name not in _BUILDERS:
        raise ValueError(f"model {name!r}: unknown; allowed: {', '.join(_BUILDERS)}")
    width = tuple(width) if width is not None else WIDTHS[name]
    if len(width) != len(WIDTHS[name]):
        raise ValueError(f"model {name!r}: width needs {len(WIDTHS[name])} sizes, got {list(width)}")
    model = _BUILDERS[name](width, in_channels=in_channels, num_classes=num_classes, **kwargs)
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
