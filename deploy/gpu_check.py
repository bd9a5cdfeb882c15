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

It always returns figures: one overall deadline (--deadline, well under the device's command
limit) and a budget for each phase, the phases in order of value (CUDA tests; Easel against eager
at 224 px; the seed-sized job; end to end against ImageFolder; 150 px; torch.compile last); a
phase that lacks what it needs (torchvision, Pillow, NumPy, a C compiler, Python.h) is reported
as skipped, naming it, and a phase the clock has no room for as skipped for time. Every child's
whole output goes to OUT/logs/, every Easel run's metrics.jsonl, events.jsonl and report.json to
OUT/runs/.
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
# Seconds kept back from the deadline for writing the results.
RESERVE = 10
# A phase with less time than this left is skipped rather than started.
MIN_PHASE = 20


class Clock:
    """The check's one deadline, and what each phase may take of what is left."""

    def __init__(self, seconds: float):
        self.end = time.perf_counter() + seconds

    def left(self) -> float:
        return self.end - time.perf_counter()

    def budget(self, wanted: float) -> float:
        return max(0.0, min(wanted, self.left() - RESERVE))


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


LOGS = None


def run(command, env=None, timeout=900, gpu=False, cwd=None, log=None):
    """Runs a command; returns (stdout, seconds, peak GPU MiB or None). Raises on failure or
    timeout. With `log`, its whole output goes to OUT/logs/<log>.log, whatever happens."""
    merged = dict(os.environ, **(env or {}))
    command = [str(c) for c in command]
    started = time.perf_counter()
    timed_out = False
    with GpuMemory(gpu) as memory:
        try:
            done = subprocess.run(command, capture_output=True, text=True,
                                  env=merged, timeout=timeout, cwd=cwd)
            stdout, stderr, code = done.stdout, done.stderr, done.returncode
        except subprocess.TimeoutExpired as expired:
            timed_out = True
            decode = lambda b: b.decode(errors="replace") if isinstance(b, bytes) else (b or "")  # noqa: E731
            stdout, stderr, code = decode(expired.stdout), decode(expired.stderr), None
    seconds = time.perf_counter() - started
    if log and LOGS:
        LOGS.mkdir(parents=True, exist_ok=True)
        (LOGS / f"{log}.log").write_text(
            f"$ {' '.join(command)}\nexit: {'timed out' if timed_out else code} after "
            f"{seconds:.1f} s\n--- stdout\n{stdout}\n--- stderr\n{stderr}\n")
    name = Path(command[0]).name
    if timed_out:
        raise RuntimeError(f"{name} did not finish within its {timeout:.0f} s")
    if code != 0:
        tail = (stdout + stderr)[-3000:]
        raise RuntimeError(f"{name} exited {code}:\n{tail}")
    return stdout, seconds, memory.peak


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


class Phases:
    """Runs measurements in the order given, each within its budget of the one deadline, each
    skipped (and said so) when the machine lacks what it needs or the clock has no room."""

    def __init__(self, results, clock, have):
        self.results, self.clock, self.have = results, clock, have

    def run(self, key, what, needs, budget, function):
        missing = [need for need in needs if not self.have.get(need)]
        if missing:
            return self.skip(key, what, f"needs {', '.join(missing)}")
        timeout = self.clock.budget(budget)
        if timeout < MIN_PHASE:
            return self.skip(key, what, f"out of time ({self.clock.left():.0f} s left of the deadline)")
        return attempt(self.results, key, what, lambda: function(timeout))

    def skip(self, key, what, why):
        self.results.put(key, {"skipped": why})
        self.results.say(f"  {what}: skipped: {why}")
        return None


def cuda_tests(bundle, sample, timeout):
    binary = bundle / "bin/cuda-tests"
    if not binary.exists():
        raise RuntimeError("no bin/cuda-tests in the bundle")
    try:
        out, _, _ = run([binary, "--test-threads=1"], env={"EASEL_SAMPLE_DATA": str(sample)},
                        timeout=timeout, log="cuda-tests")
        code = 0
    except RuntimeError as failed:
        out, code = str(failed), 1
    summary = re.findall(r"test result: \w+\. (\d+) passed; (\d+) failed", out)
    passed = sum(int(p) for p, _ in summary)
    failed = sum(int(f) for _, f in summary)
    return {"passed": passed, "failed": failed, "exit": code, "tail": out[-4000:]}


def rate(row):
    return row["images_per_second"] if row else None


# Step figures: 50 timed steps after 5 warm-up ones, three repeats with the sides alternating
# (easel, eager, easel, eager, ...), so drift on the machine hits both alike; the median shown.
STEP_REPEATS = 3
TIMED_STEPS = 50


def step_row(phases, bundle, side, batch, device, gpu, modes):
    """One image size's step figures for `modes` (easel, eager, compile): each repeat of each
    mode a phase of its own, the median of the repeats measured, the loop's seconds (the timed
    steps) beside the process's wall seconds, and the peak GPU memory of each side."""
    row = {}
    budgets = {"easel": 60, "eager": 60, "compile": 180}
    steps = TIMED_STEPS if gpu else 20

    def measure(mode, repeat):
        if mode == "easel":
            command = [bundle / "bin/throughput", "--step", "--side", side, "--batch", batch,
                       "--device", device, "--warmup", 5, "--steps", steps]
            # Easel's layout on both devices; bf16 where its precision "auto" picks it here.
            command += ["--channels-last"] + (["--bf16"] if gpu else [])
        else:
            command = [sys.executable, PYTORCH, "step", "--side", side, "--batch", batch,
                       "--device", device, "--mode", mode, "--steps", steps,
                       "--precision", "bf16" if gpu else "fp32"]

        def timed(timeout):
            out, wall, peak = run(command, gpu=gpu, timeout=timeout,
                                  log=f"step-{side}-{mode}-{repeat}")
            return dict(last_json(out), wall_seconds=wall, peak_gpu_mib=peak)
        return timed

    needs = {"easel": [], "eager": [], "compile": ["a C compiler", "Python.h"]}
    # torch.compile compiles again in every process: one run of it.
    repeats = {mode: 1 if mode == "compile" else STEP_REPEATS for mode in modes}
    samples = {mode: [] for mode in modes}
    for repeat in range(max(repeats.values())):
        for mode in modes:
            if repeat >= repeats[mode] or (repeat > 0 and not samples[mode]):
                continue  # a mode that was skipped or failed is not tried again
            measured = phases.run(f"step_{side}_{mode}_{repeat + 1}",
                                  f"{side} px {mode} (run {repeat + 1})", needs[mode],
                                  budgets[mode], measure(mode, repeat + 1))
            if measured:
                samples[mode].append(measured)
    for mode in modes:
        row[mode] = median_of(samples[mode], steps, batch)
        if row[mode]:
            phases.results.put(f"step_{side}_{mode}", row[mode])
    cells = []
    for name in modes:
        r = row[name]
        cells.append(f"{name} {rate(r):8.1f} (loop {r['loop_seconds']:.1f} s of "
                     f"{r['wall_seconds']:.1f} s, {mib(r.get('peak_gpu_mib'))}, "
                     f"{len(r['repeats'])} run(s))" if r else f"{name} -")
    ratios = [f"Easel/{base} {rate(row['easel']) / rate(row[base]):.2f}x"
              for base in ["eager", "compile"]
              if row.get("easel") and row.get(base)]
    phases.results.say(f"  {side:>3} px: " + " | ".join(cells) + ("   " + ", ".join(ratios) if ratios else ""))
    return row


def median_of(samples, steps, batch):
    """The sample with the median images/s (upper median of an even count), with every
    repeat's figure, its loop seconds and the highest peak memory of them all."""
    if not samples:
        return None
    ordered = sorted(samples, key=lambda sample: sample["images_per_second"])
    middle = dict(ordered[len(ordered) // 2])
    middle["repeats"] = [round(sample["images_per_second"], 2) for sample in samples]
    middle["loop_seconds"] = steps * batch / middle["images_per_second"]
    peaks = [sample["peak_gpu_mib"] for sample in samples if sample.get("peak_gpu_mib") is not None]
    middle["peak_gpu_mib"] = max(peaks) if peaks else None
    return middle


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
precision = "auto"
seed = 1
[augment]
flip = true
""")


def easel_run(results, bundle, spec, out_dir, device, gpu, timeout):
    command = [bundle / "bin/client", "train", "--local", spec, "--out", out_dir,
               "--device", device, "--no-cache"]
    try:
        _, seconds, peak = run(command, gpu=gpu, timeout=timeout, log=f"run-{spec.stem}")
    finally:
        # What the run wrote, even when it did not finish.
        kept = results.out / "runs" / spec.stem
        kept.mkdir(parents=True, exist_ok=True)
        for name in ["metrics.jsonl", "events.jsonl", "report.json"]:
            if (out_dir / name).exists():
                shutil.copy(out_dir / name, kept / name)
    report = json.loads((out_dir / "report.json").read_text())
    metrics = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    return {
        "seconds": seconds,
        "training_seconds": report.get("seconds"),
        "epoch_seconds": [m["seconds"] for m in metrics],
        "validation_accuracy": metrics[-1]["validation_accuracy"],
        "peak_gpu_mib": peak,
    }


def end_to_end(phases, bundle, work, data, side, batch, epochs, device, gpu):
    results = phases.results
    images = sum(1 for p in data.rglob("*.png"))
    results.say(f"\nEnd to end on a real image folder ({images:,} PNGs, {side} px, batch {batch}, "
                f"{epochs} epochs, flips, validation every epoch): wall seconds")
    spec = work / "e2e.toml"
    write_spec(spec, data, side, batch, epochs)
    easel = phases.run("e2e_easel", "Easel train --local", [], 240,
                       lambda t: easel_run(results, bundle, spec, work / "e2e-run", device, gpu, t))

    def pytorch(timeout):
        command = [sys.executable, PYTORCH, "folder", "--data", data, "--side", side,
                   "--batch", batch, "--epochs", epochs, "--device", device]
        out, seconds, peak = run(command, gpu=gpu, timeout=timeout, log="e2e-pytorch")
        return dict(last_json(out), wall_seconds=seconds, peak_gpu_mib=peak)

    # Without torchvision or Pillow the baseline reads the PNGs with PyTorch alone (and says so).
    baseline = phases.run("e2e_pytorch", "ImageFolder + DataLoader", [], 240, pytorch)
    if easel:
        results.say(f"  Easel:                     {easel['seconds']:7.1f} s  "
                    f"val acc {easel['validation_accuracy']:.3f}  ({mib(easel['peak_gpu_mib'])})")
    if baseline:
        results.say(f"  ImageFolder + DataLoader:  {baseline['wall_seconds']:7.1f} s  "
                    f"val acc {baseline['validation_accuracy']:.3f}  ({mib(baseline['peak_gpu_mib'])}, "
                    f"{baseline['workers']} workers, pinned memory; {baseline['loader']})")
    if easel and baseline:
        results.say(f"  Easel is {baseline['wall_seconds'] / easel['seconds']:.2f}x faster end to end")


def seed_job(phases, bundle, work, data, side, batch, epochs, device, gpu):
    results = phases.results
    images = sum(1 for p in data.rglob("*.png"))
    results.say(f"\nSeed-sized job: {images:,} images, {side} px, frozen VGG16 (torchvision "
                f"legacy-format weights) + head, {epochs} epochs, batch {batch}")
    fixtures = work / "fixtures"
    spec = work / "seed.toml"

    def job(timeout):
        started = time.perf_counter()
        if not (fixtures / "vgg16_legacy.pth").exists():
            run([sys.executable, "-W", "ignore", HERE / "torch_fixtures.py", fixtures],
                timeout=timeout, log="torch-fixtures")
        write_spec(spec, data, side, batch, epochs, frozen=fixtures / "vgg16_legacy.pth")
        left = timeout - (time.perf_counter() - started)
        return easel_run(results, bundle, spec, work / "seed-run", device, gpu, left)

    easel = phases.run("seed_easel", "Easel seed job", [], 240, job)
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


# Asked in a child process: a CUDA context held by this process for the whole run would take GPU
# memory from the programs being measured. What the phases need is probed there too.
PROBE = """
import importlib.util, json, os, shutil, sysconfig, torch
have = {name: importlib.util.find_spec(module) is not None
        for name, module in [("torchvision", "torchvision"), ("Pillow", "PIL"), ("NumPy", "numpy")]}
have["a C compiler"] = any(shutil.which(cc) for cc in [os.environ.get("CC", "cc"), "gcc", "clang"])
have["Python.h"] = os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h"))
print(json.dumps({"torch": torch.__version__, "cuda": torch.cuda.is_available(),
                  "device_name": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
                  "have": have}))
"""


def check(results, clock, bundle, work, cpu, compile_steps):
    facts = results.data["facts"]
    phases = Phases(results, clock, facts["have"])
    data = bundle / "data"
    sample = unpack(data / "mnist-sample.tar.gz", work) if (data / "mnist-sample.tar.gz").exists() \
        else data / "mnist-sample"
    if cpu:
        folder = unpack(data / "mnist-1k.tar.gz", work)
        device, gpu = "cpu", False
        first, second, batch, job = (64, None, 8, (folder, 32, 32, 5))
        e2e = (folder, 32, 32, 2)
    else:
        device, gpu = "cuda", True
        tests = phases.run("cuda_tests", "CUDA tests", [], 150, lambda t: cuda_tests(bundle, sample, t))
        if tests:
            results.say(f"\nOpt-in CUDA tests: {tests['passed']} passed, {tests['failed']} failed")
        folder = unpack(data / "fashion-9k.tar.gz", work)
        first, second, batch, job = (224, 150, 128, (folder, 150, 128, 25))
        e2e = (folder, 150, 128, 10)
    results.say(f"\nTraining step, VGG16 + 32-64-128-64 head, batch {batch}, SGD momentum "
                f"({'bf16' if gpu else 'fp32'}, channels-last), images/s, median of alternating runs "
                f"(the timed loop's seconds of the process's wall seconds, peak GPU memory)")
    step_row(phases, bundle, first, batch, device, gpu, ["easel", "eager"])
    run_device = device if cpu else "cuda:0"
    seed_job(phases, bundle, work, *job, run_device, gpu)
    end_to_end(phases, bundle, work, *e2e, run_device, gpu)
    if second:
        results.say("")
        step_row(phases, bundle, second, batch, device, gpu, ["easel", "eager"])
    if compile_steps:
        results.say("\ntorch.compile (last: its compile time is the least predictable)")
        for side in [first] + ([second] if second else []):
            step_row(phases, bundle, side, batch, device, gpu, ["compile"])


def main():
    global LOGS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--cpu", action="store_true", help="CPU sizes, no CUDA needed")
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    parser.add_argument("--deadline", type=float, default=None,
                        help="seconds the whole check may take (default 540 on a GPU, 1800 with --cpu)")
    args = parser.parse_args()
    clock = Clock(args.deadline or (1800 if args.cpu else 540))
    bundle = args.bundle.resolve()
    results = Results(args.out.resolve(), "cpu" if args.cpu else "gpu")
    LOGS = results.out / "logs"
    work = Path(tempfile.mkdtemp(prefix="easel-gpu-check-"))
    probe = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=300)
    if probe.returncode != 0:
        results.say(f"PyTorch cannot be imported:\n{probe.stderr[-2000:]}")
        return 1
    facts = dict(json.loads(probe.stdout.strip().splitlines()[-1]), cpus=os.cpu_count())
    results.put("facts", facts)
    lacking = [name for name, there in facts["have"].items() if not there]
    results.say(f"Easel GPU check ({results.data['mode']} mode), {facts['device_name']}, "
                f"PyTorch {facts['torch']}, {facts['cpus']} CPU cores, deadline {clock.left():.0f} s"
                + (f"; lacking {', '.join(lacking)} (a phase that needs one is skipped; the end-to-end "
                   f"baseline reads the PNGs with PyTorch alone without torchvision or Pillow)"
                   if lacking else ""))
    if not args.cpu and not facts["cuda"]:
        results.say("no CUDA device: run with --cpu, or on a GPU machine")
        return 1
    started = time.perf_counter()
    try:
        check(results, clock, bundle, work, args.cpu, not args.no_compile)
    finally:
        results.put("seconds", time.perf_counter() - started)
        results.say(f"\nchecked in {time.perf_counter() - started:.0f} s; "
                    f"results in {results.out / 'gpu-check.txt'}, logs in {LOGS}")
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
