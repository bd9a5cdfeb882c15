"""PyTorch eager baseline for the engine's CPU training-step figures.

The same models as `benches/throughput.rs` (small CNN; VGG16 features + the 32-64-128-64
head), 5 classes, 64x64, batch 8, SGD momentum 0.9, random data, 3 warm-up then 10 timed steps.
Prints `<name> <images/s>` lines; `deploy/bench.sh` sets them beside the engine's.
"""

import time

import torch
import torch.nn as nn

VGG16 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


def convs(config):
    layers, channels = [], 3
    for v in config:
        if v == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            layers += [nn.Conv2d(channels, v, 3, padding=1), nn.ReLU(inplace=True)]
            channels = v
    return layers


def head(inputs, widths, classes):
    layers = [nn.Flatten()]
    for width in widths:
        layers += [nn.Linear(inputs, width), nn.ReLU(inplace=True)]
        inputs = width
    return layers + [nn.Linear(inputs, classes)]


def rate(model, side=64, batch=8, warmup=3, steps=10):
    torch.manual_seed(0)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    x = torch.randn(batch, 3, side, side)
    y = torch.randint(0, 5, (batch,))

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()

    for _ in range(warmup):
        step()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch / (time.perf_counter() - started)


def main():
    small = nn.Sequential(*convs([32, "M", 64, "M"]), *head(64 * 16 * 16, [64, 128], 5))
    vgg16 = nn.Sequential(*convs(VGG16), *head(512 * 2 * 2, [32, 64, 128, 64], 5))
    print(f"small_cnn {rate(small):.1f}")
    print(f"vgg16 {rate(vgg16):.1f}")


if __name__ == "__main__":
    main()
