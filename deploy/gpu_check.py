#!/usr/bin/env python3
"""The GPU check: Easel's figures beside what a user would otherwise run, in one process.

  gpu_check.py --bundle DIR --out DIR [--cpu]

DIR (made by `deploy/gpu-check.sh pack`, or by `deploy/gpu-check.sh cpu` here) holds
bin/throughput (the engine's bench), bin/client, bin/cuda-tests (optional) and the image
folders under data/. Results go to OUT/gpu-check.txt (the table) and OUT/gpu-check.json (every
figure), rewritten after each measurement so a run cut short still leaves what it measured.

On a GPU: the opt-in CUDA tests; VGG16 + head training steps at batch 128, 224 and 150 px,
Easel (bf16, channels-last) vs PyTorch eager (bf16 autocast, channels-last) vs torch.compile;
an end-to-end run on a real image folder (decode, resize, flips, train, validate, 10 epochs)
vs torchvision ImageFolder + DataLoader; the seed-sized frozen-backbone job (9,000 images,
150 px, 25 epochs); peak GPU memory of each (nvidia-smi, the same for both sides).
With --cpu: the same measurements at CPU sizes, so the script is exercised where no GPU is.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PYTORCH = HERE / "gpu_check_pytorch.py"


class Results:
    def __init__(self, out: Path, mode: str):
        self.out = out
        self.data = {"mode": mode, "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        self.lines = []
        out.mkdir(parents=True, exist_ok=True)

    def put(self, key, value):
        self.data[key] = value
        self.flush()

    def say(self, line=""):
        print(line, flush=True)
        self.lines.append(line)
        self.flush()

    def flush(self):
        (self.out / "gpu-check.json").write_text(json.dumps(self.data, indent=1))
        (self.out / "gpu-check.txt").write_text("\n".join(self.lines) + "\n")


class GpuMemory:
    """Peak device memory in use while a command runs, minus what was in use before it."""

    def __init__(self, enabled: bool):
        self.enabled = enabled and shutil.which("nvidia-smi") is not None
        self.peak = None

    @staticmethod
    def used_mib():
        try:
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", "0"],
                capture_output=True, text=True, timeout=10).stdout
            return float(out.strip().splitlines()[0])
        except (OSError, ValueError, IndexError, subprocess.SubprocessError):
            return None

    def __enter__(self):
        if not self.enabled:
            return self
        self.baseline = self.used_mib() or 0.0
        self.peak = 0.0
        self.running = True
        self.thread = threading.Thread(target=self.sample, daemon=True)
        self.thread.start()
        return self

    def sample(self):
        while self.running:
            used = self.used_mib()
            if used is not None:
                self.peak = max(self.peak, used - self.baseline)
            time.sleep(0.2)

    def __exit__(self, *_):
        if self.enabled:
            self.running = False
            self.thread.join()


def run(command, env=None, timeout=900, gpu=False, cwd=None):
    """Runs a command; returns (stdout, seconds, peak GPU MiB or None). Raises on failure."""
    merged = dict(os.environ, **(env or {}))
    started = time.perf_counter()
    with GpuMemory(gpu) as memory:
        done = subprocess.run([str(c) for c in command], capture_output=True, text=True,
                              env=merged, timeout=timeout, cwd=cwd)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        tail = (done.stdout + done.stderr)[-3000:]
        raise RuntimeError(f"{Path(str(command[0])).name} exited {done.returncode}:\n{tail}")
    return done.stdout, seconds, memory.peak


def last_json(text):
    return json.loads([line for line in text.splitlines() if line.startswith("{")][-1])


def mib(value):
    return "-" if value is None else f"{value:,.0f} MiB"


def attempt(results, key, what, function):
    """Runs one measurement; a failure is recorded and the check goes on."""
    try:
        value = function()
        results.put(key, value)
        return value
    except Exception as error:  # noqa: BLE001 - every failure is reported, none stops the rest
        results.put(key, {"error": str(error)})
        results.say(f"  {what}: FAILED: {str(error).splitlines()[0]}")
        return None


def cuda_tests(bundle, sample):
    binary = bundle / "bin/cuda-tests"
    if not binary.exists():
        raise RuntimeError("no bin/cuda-tests in the bundle")
    merged = dict(os.environ, EASEL_SAMPLE_DATA=str(sample))
    done = subprocess.run([str(binary), "--test-threads=1"], capture_output=True, text=True,
                          env=merged, timeout=600)
    output = done.stdout + done.stderr
    summary = re.findall(r"test result: \w+\. (\d+) passed; (\d+) failed", output)
    passed = sum(int(p) for p, _ in summary)
    failed = sum(int(f) for _, f in summary)
    return {"passed": passed, "failed": failed, "exit": done.returncode, "tail": output[-4000:]}


def step_figures(results, bundle, sizes, batch, device, gpu, compile_timeout):
    results.say(f"\nTraining step, VGG16 + 32-64-128-64 head, batch {batch}, SGD momentum "
                f"({'bf16, channels-last' if gpu else 'fp32'}), images/s (peak GPU memory)")
    figures = {}
    for side in sizes:
        row = {}
        easel_args = [bundle / "bin/throughput", "--step", "--side", side, "--batch", batch,
                      "--device", device, "--warmup", 5, "--steps", 20]
        if gpu:
            easel_args += ["--bf16", "--channels-last"]

        def easel():
            out, _, peak = run(easel_args, gpu=gpu)
            return dict(last_json(out), peak_gpu_mib=peak)

        def pytorch(mode, timeout):
            def measure():
                command = [sys.executable, PYTORCH, "step", "--side", side, "--batch", batch,
                           "--device", device, "--mode", mode,
                           "--precision", "bf16" if gpu else "fp32"]
                out, _, peak = run(command, gpu=gpu, timeout=timeout)
                return dict(last_json(out), peak_gpu_mib=peak)
            return measure

        row["easel"] = attempt(results, f"step_{side}_easel", f"{side} px Easel", easel)
        row["eager"] = attempt(results, f"step_{side}_eager", f"{side} px PyTorch eager",
                               pytorch("eager", 600))
        row["compile"] = attempt(results, f"step_{side}_compile", f"{side} px torch.compile",
                                 pytorch("compile", compile_timeout)) if compile_timeout else None
        figures[side] = row
        rate = lambda r: r["images_per_second"] if r else None  # noqa: E731
        cells = []
        for name in ["easel", "eager", "compile"]:
            r = row[name]
            cells.append(f"{name} {rate(r):8.1f} ({mib(r.get('peak_gpu_mib'))})" if r else f"{name} -")
        ratios = []
        for base in ["eager", "compile"]:
            if row["easel"] and row[base]:
                ratios.append(f"Easel/{base} {rate(row['easel']) / rate(row[base]):.2f}x")
        results.say(f"  {side:>3} px: " + " | ".join(cells) + ("   " + ", ".join(ratios) if ratios else ""))
    return figures


def write_spec(path, data, side, batch, epochs, frozen=None, lr=0.01):
    freeze = ""
    if frozen:
        freeze = f'pretrained = "{frozen}"\nfreeze_backbone = true\n'
    path.write_text(f"""name = "{path.stem}"
[data]
path = "{data}"
validation_split = 0.2
test_split = 0.0
seed = 1
image_size = {side}
[model]
architecture = "vgg16"
head = [32, 64, 128, 64]
dropout = 0.0
{freeze}[train]
epochs = {epochs}
batch_size = {batch}
optimizer = "sgd"
learning_rate = {lr}
momentum = 0.9
precision = "bf16"
seed = 1
[augment]
flip = true
""")


def easel_run(bundle, spec, out_dir, device, gpu):
    command = [bundle / "bin/client", "train", "--local", spec, "--out", out_dir,
               "--device", device, "--no-cache"]
    _, seconds, peak = run(command, gpu=gpu, timeout=1200)
    report = json.loads((out_dir / "report.json").read_text())
    metrics = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    return {
        "seconds": seconds,
        "training_seconds": report.get("seconds"),
        "epoch_seconds": [m["seconds"] for m in metrics],
        "validation_accuracy": metrics[-1]["validation_accuracy"],
        "peak_gpu_mib": peak,
    }


def end_to_end(results, bundle, work, data, side, batch, epochs, device, gpu):
    images = sum(1 for p in data.rglob("*.png"))
    results.say(f"\nEnd to end on a real image folder ({images:,} PNGs, {side} px, batch {batch}, "
                f"{epochs} epochs, flips, validation every epoch): wall seconds")
    spec = work / "e2e.toml"
    write_spec(spec, data, side, batch, epochs)
    easel = attempt(results, "e2e_easel", "Easel train --local",
                    lambda: easel_run(bundle, spec, work / "e2e-run", device, gpu))

    def pytorch():
        command = [sys.executable, PYTORCH, "folder", "--data", data, "--side", side,
                   "--batch", batch, "--epochs", epochs, "--device", device]
        out, seconds, peak = run(command, gpu=gpu, timeout=1200)
        return dict(last_json(out), wall_seconds=seconds, peak_gpu_mib=peak)

    baseline = attempt(results, "e2e_pytorch", "ImageFolder + DataLoader", pytorch)
    if easel:
        results.say(f"  Easel:                     {easel['seconds']:7.1f} s  "
                    f"val acc {easel['validation_accuracy']:.3f}  ({mib(easel['peak_gpu_mib'])})")
    if baseline:
        results.say(f"  ImageFolder + DataLoader:  {baseline['wall_seconds']:7.1f} s  "
                    f"val acc {baseline['validation_accuracy']:.3f}  ({mib(baseline['peak_gpu_mib'])}, "
                    f"{baseline['workers']} workers, pinned memory)")
    if easel and baseline:
        results.say(f"  Easel is {baseline['wall_seconds'] / easel['seconds']:.2f}x faster end to end")


def seed_job(results, bundle, work, data, side, batch, epochs, device, gpu):
    images = sum(1 for p in data.rglob("*.png"))
    results.say(f"\nSeed-sized job: {images:,} images, {side} px, frozen VGG16 (torchvision "
                f"legacy-format weights) + head, {epochs} epochs, batch {batch}")
    fixtures = work / "fixtures"
    if not (fixtures / "vgg16_legacy.pth").exists():
        run([sys.executable, "-W", "ignore", HERE / "torch_fixtures.py", fixtures], timeout=600)
    spec = work / "seed.toml"
    write_spec(spec, data, side, batch, epochs, frozen=fixtures / "vgg16_legacy.pth")
    easel = attempt(results, "seed_easel", "Easel seed job",
                    lambda: easel_run(bundle, spec, work / "seed-run", device, gpu))
    if easel:
        epoch_seconds = easel["epoch_seconds"]
        later = sum(epoch_seconds[1:]) / max(len(epoch_seconds) - 1, 1)
        results.say(f"  whole job {easel['seconds']:.1f} s wall (training {easel['training_seconds']:.1f} s), "
                    f"epoch 1 {epoch_seconds[0]:.2f} s, later epochs {later:.3f} s each "
                    f"({mib(easel['peak_gpu_mib'])})")


def unpack(archive: Path, into: Path) -> Path:
    import tarfile
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return into / archive.name.split(".tar")[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--cpu", action="store_true", help="CPU sizes, no CUDA needed")
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    args = parser.parse_args()
    bundle = args.bundle.resolve()
    results = Results(args.out.resolve(), "cpu" if args.cpu else "gpu")
    work = Path(tempfile.mkdtemp(prefix="easel-gpu-check-"))
    # Asked in a child process: a CUDA context held by this process for the whole run would take
    # GPU memory from the programs being measured.
    probe = subprocess.run([sys.executable, "-c", "import json, torch; print(json.dumps({"
                            "'torch': torch.__version__, 'cuda': torch.cuda.is_available(), "
                            "'device_name': torch.cuda.get_device_name(0) "
                            "if torch.cuda.is_available() else 'cpu'}))"],
                           capture_output=True, text=True, timeout=300)
    if probe.returncode != 0:
        print(f"PyTorch cannot be imported:\n{probe.stderr[-2000:]}", file=sys.stderr)
        return 1
    facts = dict(json.loads(probe.stdout.strip().splitlines()[-1]), cpus=os.cpu_count())
    results.put("facts", facts)
    results.say(f"Easel GPU check ({results.data['mode']} mode), {facts['device_name']}, "
                f"PyTorch {facts['torch']}, {facts['cpus']} CPU cores")
    if not args.cpu and not facts["cuda"]:
        results.say("no CUDA device: run with --cpu, or on a GPU machine")
        return 1
    data = bundle / "data"
    sample = unpack(data / "mnist-sample.tar.gz", work) if (data / "mnist-sample.tar.gz").exists() \
        else data / "mnist-sample"
    started = time.perf_counter()
    if args.cpu:
        folder = unpack(data / "mnist-1k.tar.gz", work)
        device, gpu = "cpu", False
        step_figures(results, bundle, [64], 8, device, gpu, 0 if args.no_compile else 600)
        end_to_end(results, bundle, work, folder, 32, 32, 2, device, gpu)
        seed_job(results, bundle, work, folder, 32, 32, 5, device, gpu)
    else:
        device, gpu = "cuda", True
        tests = attempt(results, "cuda_tests", "CUDA tests", lambda: cuda_tests(bundle, sample))
        if tests:
            results.say(f"\nOpt-in CUDA tests: {tests['passed']} passed, {tests['failed']} failed")
        step_figures(results, bundle, [224, 150], 128, device, gpu, 0 if args.no_compile else 900)
        folder = unpack(data / "fashion-9k.tar.gz", work)
        end_to_end(results, bundle, work, folder, 150, 128, 10, "cuda:0", gpu)
        seed_job(results, bundle, work, folder, 150, 128, 25, "cuda:0", gpu)
    results.put("seconds", time.perf_counter() - started)
    results.say(f"\nchecked in {time.perf_counter() - started:.0f} s; "
                f"results in {results.out / 'gpu-check.txt'}")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
