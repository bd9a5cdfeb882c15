"""Writes the legacy-format weights fixtures: real `torch.save` output of PyTorch itself.

torchvision publishes its VGG ImageNet weights (`vgg16-397923af.pth`, `vgg11_bn-6002323d.pth`)
in the pre-1.6, non-zip `torch.save` format. These fixtures are state_dicts in exactly that
format and in torchvision's layout (an OrderedDict with `_metadata`; `features.N.*` conv and
batch-norm tensors, `num_batches_tracked` counters, `classifier.{0,3,6}.*`), made by
`torch.save(..., _use_new_zipfile_serialization=False)`. The backbones have torchvision's exact
shapes; the classifier keeps its names and output size (1000) but narrower hidden layers, so the
files stay small (Easel ignores a state_dict's classifier anyway).

Beside each `<name>.pth` a `<name>.json` records every tensor's shape, dtype, sum and first
values, so the Rust tests check what they read against what PyTorch wrote.

Beside them, `torchscript_setstate.pt` is a TorchScript archive (`torch.jit.save`) whose
`__setstate__` prints `TORCHSCRIPT_MARKER` and raises: libtorch's loader runs that code, so a
weights reader that reaches it shows the marker. Easel must refuse the file unread.

Usage: python3 torch_fixtures.py OUT_DIR   (with the PyTorch 2.11 that libtorch comes from)
"""

import collections
import json
import pathlib
import sys
import zipfile
from typing import Tuple

import torch
from torch import nn

TORCHSCRIPT_MARKER = "EASEL-TORCHSCRIPT-CODE-RAN"

VGG11 = [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]
VGG16 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
CLASSIFIER_HIDDEN = 64


def vgg(config, batch_norm):
    layers, channels = [], 3
    for width in config:
        if width == "M":
            layers.append(nn.MaxPool2d(2))
            continue
        conv = nn.Conv2d(channels, width, 3, padding=1)
        nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
        nn.init.normal_(conv.bias, std=0.01)
        layers.append(conv)
        if batch_norm:
            norm = nn.BatchNorm2d(width)
            with torch.no_grad():
                norm.weight.uniform_(0.5, 1.5)
                norm.bias.normal_(std=0.1)
                norm.running_mean.normal_(std=0.2)
                norm.running_var.uniform_(0.5, 2.0)
                norm.num_batches_tracked.fill_(1234)
            layers.append(norm)
        layers.append(nn.ReLU(inplace=True))
        channels = width
    model = nn.Module()
    model.features = nn.Sequential(*layers)
    model.avgpool = nn.AdaptiveAvgPool2d((7, 7))
    model.classifier = nn.Sequential(
        nn.Linear(512 * 7 * 7, CLASSIFIER_HIDDEN), nn.ReLU(True), nn.Dropout(),
        nn.Linear(CLASSIFIER_HIDDEN, CLASSIFIER_HIDDEN), nn.ReLU(True), nn.Dropout(),
        nn.Linear(CLASSIFIER_HIDDEN, 1000),
    )
    return model


def describe(state):
    return {
        name: {
            "shape": list(tensor.shape),
            "dtype": str(tensor.dtype).removeprefix("torch."),
            "sum": float(tensor.double().sum()),
            "first": [float(v) for v in tensor.flatten()[:4].double()],
        }
        for name, tensor in state.items()
    }


class CodeOnLoad(nn.Module):
    """A backbone whose archive runs code when loaded: what an uploaded `.pt` can carry."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU())

    def forward(self, x):
        return self.features(x)

    @torch.jit.export
    def __getstate__(self) -> Tuple[bool, int]:
        return (self.training, 1)

    @torch.jit.export
    def __setstate__(self, state: Tuple[bool, int]) -> None:
        print("EASEL-TORCHSCRIPT-CODE-RAN")
        raise RuntimeError("code from a weights file ran")


def write_torchscript(out: pathlib.Path) -> None:
    path = out / "torchscript_setstate.pt"
    torch.jit.save(torch.jit.script(CodeOnLoad()), path)
    # Loading it here would run it; the archive's records show what it is.
    names = zipfile.ZipFile(path).namelist()
    assert any("/code/" in n for n in names) and any(n.endswith("data.pkl") for n in names)
    print(f"{path} ({path.stat().st_size} bytes, TorchScript with code in __setstate__)")


def main() -> None:
    out = pathlib.Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(2017)
    for name, config, batch_norm in [("vgg16", VGG16, False), ("vgg11_bn", VGG11, True)]:
        state = vgg(config, batch_norm).state_dict()
        assert hasattr(state, "_metadata")
        path = out / f"{name}_legacy.pth"
        torch.save(state, path, _use_new_zipfile_serialization=False)
        with open(path, "rb") as f:
            assert f.read(2) == b"\x80\x02", "not the legacy pickle stream"
        reloaded = torch.load(path, weights_only=True)
        assert all(torch.equal(reloaded[k], v) for k, v in state.items())
        (out / f"{name}_legacy.json").write_text(json.dumps(describe(state), indent=1))
        print(f"{path} ({path.stat().st_size} bytes, {len(state)} tensors)")
    write_torchscript(out)


if __name__ == "__main__":
    main()
