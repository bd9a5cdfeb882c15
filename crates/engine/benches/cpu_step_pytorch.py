"""PyTorch eager training steps on the CPU, for the `cpu_step` bench to set beside Easel's.

  python3 cpu_step_pytorch.py --architecture small_cnn|deep_cnn|vgg16 [--frozen]
      --side 150 --batch 32 [--channels-last] [--bf16] --warmup 2 --steps 10

The models are Easel's (torchvision's VGG16 layout; the small and deep CNNs of the write-up),
5 classes, the dense head of the configs, SGD momentum 0.9 on random data: what a user would
write, with the two switches the PyTorch CPU tuning guide recommends (channels-last memory,
bf16 autocast). A frozen backbone takes no gradient, as `requires_grad_(False)` gives.
Prints one JSON line: images/s of the timed steps.
"""

import argparse
import json
import time

import torch
import torch.nn as nn

VGG16 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


def conv(inputs, outputs):
    return [nn.Conv2d(inputs, outputs, 3, padding=1), nn.ReLU(inplace=True)]


def backbone(architecture):
    if architecture == "small_cnn":
        return [*conv(3, 32), nn.MaxPool2d(2), *conv(32, 64), nn.MaxPool2d(2)], 64, 4
    if architecture == "deep_cnn":
        layers, channels = [], 3
        for width in [32, 64, 128]:
            layers += [*conv(channels, width), *conv(width, width), nn.MaxPool2d(2), nn.Dropout(0.25)]
            channels = width
        return layers, 128, 8
    layers, channels = [], 3
    for item in VGG16:
        if item == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            layers += conv(channels, item)
            channels = item
    return layers, 512, 32


def model_of(architecture, side, classes=5):
    layers, channels, stride = backbone(architecture)
    widths = [64, 128] if architecture != "vgg16" else [32, 64, 128, 64]
    features = nn.Sequential(*layers)
    inputs = channels * (side // stride) ** 2
    head = [nn.Flatten()]
    for width in widths:
        head += [nn.Linear(inputs, width), nn.ReLU(inplace=True), nn.Dropout(0.2)]
        inputs = width
    return features, nn.Sequential(*head, nn.Linear(inputs, classes))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--architecture", default="small_cnn")
    parser.add_argument("--frozen", action="store_true")
    parser.add_argument("--side", type=int, default=150)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd")
    args = parser.parse_args()

    torch.manual_seed(0)
    features, head = model_of(args.architecture, args.side)
    if args.frozen:
        features.requires_grad_(False)
    model = nn.Sequential(features, head)
    x = torch.randn(args.batch, 3, args.side, args.side)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 5, (args.batch,))
    trainable = [p for p in model.parameters() if p.requires_grad]
    if args.optimizer == "adam":
        optimizer = torch.optim.Adam(trainable, lr=1e-3)
    else:
        optimizer = torch.optim.SGD(trainable, lr=1e-3, momentum=0.9)

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()

    for _ in range(args.warmup):
        step()
    started = time.perf_counter()
    for _ in range(args.steps):
        step()
    seconds = time.perf_counter() - started
    print(json.dumps({
        "images_per_second": args.steps * args.batch / seconds,
        "threads": torch.get_num_threads(),
    }))


if __name__ == "__main__":
    main()
