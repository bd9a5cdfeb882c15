"""What a user would write in PyTorch, for the GPU check to measure Easel against.

Subcommands (each prints one JSON line):

  step   --side S --batch B --device D --mode eager|compile [--precision bf16|fp32]
         Training steps of VGG16's conv base + the 32-64-128-64 dense head of configs/vgg16-art.toml (5 classes) on
         random data: SGD momentum 0.9, channels-last, bf16 autocast on CUDA, as the
         PyTorch docs recommend; `compile` wraps the model in torch.compile.
  folder --data DIR --side S --batch B --epochs E --device D [--lr LR]
         The same model trained end to end on an image folder the usual way:
         torchvision.datasets.ImageFolder + DataLoader (every CPU core, pinned memory,
         persistent workers), resize, random flips, normalisation; validation after each epoch
         on a fixed 20 % split. Without torchvision (or Pillow), the same with PyTorch alone
         (`torch_image_folder.py`); the JSON's `loader` says which ran.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn

# The same model builders as the CPU bench's PyTorch baseline.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "crates/engine/benches"))
from pytorch_baseline import VGG16, convs, head  # noqa: E402

HEAD = [32, 64, 128, 64]
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def vgg16_with_head(side, classes):
    """VGG16's conv base (torchvision's layout) and the dense head of configs/vgg16-art.toml."""
    return nn.Sequential(*convs(VGG16), *head(512 * (side // 32) ** 2, HEAD, classes))


def peak_memory(device):
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**20


def prepare(model, device, precision):
    # Channels-last on both devices (the PyTorch tuning guide's advice for cuDNN and oneDNN).
    model = model.to(device).to(memory_format=torch.channels_last)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    return model, autocast


def step(args):
    device = torch.device(args.device)
    torch.manual_seed(0)
    model, autocast = prepare(vgg16_with_head(args.side, 5), device, args.precision)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    x = torch.randn(args.batch, 3, args.side, args.side, device=device)
    x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 5, (args.batch,), device=device)

    def train_step(model):
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        return loss

    if args.mode == "compile":
        compiled = torch.compile(model)
        run = lambda: train_step(compiled)  # noqa: E731
    else:
        run = lambda: train_step(model)  # noqa: E731
    started = time.perf_counter()
    for _ in range(args.warmup):
        run()
    sync(device)
    warmup_seconds = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(args.steps):
        loss = run()
    float(loss)
    seconds = time.perf_counter() - started
    print(json.dumps({
        "images_per_second": args.steps * args.batch / seconds,
        "warmup_seconds": warmup_seconds,
        "peak_allocated_mib": peak_memory(device),
    }))


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def image_folders(data, side):
    """Training (flipped) and evaluation datasets of `data`, and which loader makes them."""
    try:
        from torchvision import datasets, transforms
        import PIL  # noqa: F401  (ImageFolder's loader)
    except ImportError:
        from torch_image_folder import ImageFolder
        return (ImageFolder(data, side, MEAN, STD, flip=True),
                ImageFolder(data, side, MEAN, STD, flip=False),
                "PyTorch only (torchvision or Pillow missing): stdlib PNG decoder, "
                "F.interpolate resize")
    normalise = transforms.Normalize(MEAN, STD)
    size = (side, side)
    train_tf = transforms.Compose([
        transforms.Resize(size), transforms.RandomHorizontalFlip(), transforms.ToTensor(), normalise,
    ])
    eval_tf = transforms.Compose([transforms.Resize(size), transforms.ToTensor(), normalise])
    # The default loader opens each file with PIL and converts it to RGB, as Easel does.
    return (datasets.ImageFolder(data, transform=train_tf),
            datasets.ImageFolder(data, transform=eval_tf),
            "torchvision ImageFolder (PIL)")


def folder(args):
    from torch.utils.data import DataLoader, Subset

    started = time.perf_counter()
    device = torch.device(args.device)
    torch.manual_seed(0)
    train_set, eval_set, loader_name = image_folders(args.data, args.side)
    order = torch.randperm(len(train_set), generator=torch.Generator().manual_seed(0)).tolist()
    cut = int(len(order) * 0.8)
    workers = os.cpu_count() or 1
    loader = lambda data, shuffle, drop: DataLoader(  # noqa: E731
        data, batch_size=args.batch, shuffle=shuffle, num_workers=workers, pin_memory=True,
        persistent_workers=True, drop_last=drop,
    )
    train_loader = loader(Subset(train_set, order[:cut]), True, True)
    eval_loader = loader(Subset(eval_set, order[cut:]), False, False)
    classes = len(train_set.classes)
    precision = "bf16" if device.type == "cuda" else "fp32"  # as Easel: bf16 on CUDA only
    model, autocast = prepare(vgg16_with_head(args.side, classes), device, precision)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    memory_format = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    epochs = []
    accuracy = 0.0
    for _ in range(args.epochs):
        epoch_started = time.perf_counter()
        model.train()
        for x, y in train_loader:
            x = x.to(device, non_blocking=True).contiguous(memory_format=memory_format)
            y = y.to(device, non_blocking=True)
            optimizer.zero_grad(set_to_none=True)
            with autocast:
                loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
        model.eval()
        correct = total = 0
        with torch.no_grad(), autocast:
            for x, y in eval_loader:
                x = x.to(device, non_blocking=True).contiguous(memory_format=memory_format)
                y = y.to(device, non_blocking=True)
                correct += (model(x).argmax(1) == y).sum().item()
                total += len(y)
        accuracy = correct / max(total, 1)
        epochs.append(time.perf_counter() - epoch_started)
    print(json.dumps({
        "seconds": time.perf_counter() - started,
        "epoch_seconds": epochs,
        "validation_accuracy": accuracy,
        "images": len(train_set),
        "workers": workers,
        "loader": loader_name,
        "peak_allocated_mib": peak_memory(device),
    }))


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("step")
    s.add_argument("--side", type=int, required=True)
    s.add_argument("--batch", type=int, required=True)
    s.add_argument("--device", default="cuda")
    s.add_argument("--mode", choices=["eager", "compile"], default="eager")
    s.add_argument("--precision", choices=["bf16", "fp32"], default="bf16")
    s.add_argument("--warmup", type=int, default=5)
    s.add_argument("--steps", type=int, default=20)
    f = sub.add_parser("folder")
    f.add_argument("--data", required=True)
    f.add_argument("--side", type=int, required=True)
    f.add_argument("--batch", type=int, required=True)
    f.add_argument("--epochs", type=int, required=True)
    f.add_argument("--device", default="cuda")
    f.add_argument("--lr", type=float, default=0.01)
    args = parser.parse_args()
    {"step": step, "folder": folder}[args.command](args)


if __name__ == "__main__":
    main()
