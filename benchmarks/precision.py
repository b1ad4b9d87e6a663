"""B5: what bf16 autocast buys on this machine, and how two units should share its cores.

    python benchmarks/precision.py                # 1-5 below (about 12 min on 2 cores)
    python benchmarks/precision.py --quick        # fewer repeats, no real unit, no parity fits
    python benchmarks/precision.py --compile      # 6 alone, added to the last results

1. Training step time (forward + backward + AdamW, batch 32, length 128, MiniLM) of a single
   trainable adapter and of ScaLearn over K = 8 frozen adapters, fp32 against bf16 autocast, each
   with PyTorch's fused attention (sdpa) and the plain one (eager), and each with PyTorch's
   dropout and with the training step's CPU dropout (peft_core/dropout.py); interleaved in a
   shuffled order, median of repeats, in one process.
2. Useful GFLOP/s of those steps (the FLOP count of benchmarks/k_adapters.py, all tokens real)
   beside the machine's measured fp32 and bf16 matmul peaks.
3. Examples/s of one real unit both ways: an RTE adapter, one epoch on its 2,241 training pairs.
4. Quality parity: the same few-shot STS-B fits (same seeds) in fp32 and in bf16; the test Pearson
   must differ by less than the seed-to-seed spread (STS-B, not RTE: at k = 256 an RTE adapter is at
   chance in both precisions, so agreement there would show nothing).
5. Two units on two cores: one after another (2 torch threads), in two threads of one process, and
   in two processes of one torch thread each; total steps per second.
6. `--compile` (on its own, added to the last results): the bf16 step with the encoder under
   torch.compile, and the steps it takes to earn back its compile time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import scipy.stats  # noqa: E402
import torch  # noqa: E402

from benchmarks.publish import write_result_files  # noqa: E402
from k_adapters import ADAPTER, Bench, Candidate, adapter_step_flops, backbone_step_flops, machine, random_batch  # noqa: E402
from peft_core.backbones import attention_implementation, load_backbone  # noqa: E402
from peft_core.configs import AdapterConfig, TrainConfig  # noqa: E402
from peft_core.data import load_task_data, sample_k_shot  # noqa: E402
from peft_core.dropout import training_dropout  # noqa: E402
from peft_core.precision import autocast, native_bf16  # noqa: E402
from peft_core.adapter_jobs import train_adapter  # noqa: E402
from peft_core.statistics import mean_std  # noqa: E402
from peft_core.task_specs import get_task  # noqa: E402
from flows.config import DATA_DIR_ENV  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
GLUE = Path(os.environ.get(DATA_DIR_ENV) or REPO.parent / "shared" / "data" / "glue")
GOAL_SPEEDUP = 1.8
CANDIDATES = [Candidate("single", 1), Candidate("scalearn", 8)]
PRECISIONS = ("fp32", "bf16")
ATTENTION = ("sdpa", "eager")
# PyTorch's dropout, and the one training steps run on this device (peft_core.dropout)
DROPOUT = {"torch": contextlib.nullcontext, "adapterflow": lambda: training_dropout("cpu")}
UNIT_DROPOUT = "adapterflow"


def step_times(repeats: int, warmup: int, batch_size: int, length: int) -> dict[str, list[float]]:
    """Wall seconds of one training step in each repeat, by 'candidate/precision/attention/dropout'."""
    backbone = load_backbone("minilm")
    bench = Bench(backbone, CANDIDATES)
    batch = random_batch(backbone, batch_size, length)
    settings = [(c, p, a, d) for c in CANDIDATES for p in PRECISIONS for a in ATTENTION for d in DROPOUT]
    times: dict[tuple, list[float]] = {s: [] for s in settings}
    try:
        for repeat in range(warmup + repeats):
            order = list(settings)
            random.Random(repeat).shuffle(order)
            for candidate, precision, attention, dropout in order:
                backbone.model.set_attn_implementation(attention)
                with autocast(precision, "cpu"), DROPOUT[dropout]():
                    seconds = bench.step_seconds(candidate, batch)["wall"]
                if repeat >= warmup:
                    times[(candidate, precision, attention, dropout)].append(seconds)
            print(f"step timing repeat {repeat + 1}/{warmup + repeats}", flush=True)
    finally:
        bench.model.detach()
    return {f"{c.label}/{p}/{a}/{d}": t for (c, p, a, d), t in times.items()}


def matmul_peak_gflops(dtype: torch.dtype, size: int = 2048, repeats: int = 5) -> float:
    a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * size ** 3 / best / 1e9


def _timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def useful_gflops(config, candidate: Candidate, seconds: float, batch_size: int, length: int) -> float:
    tokens = batch_size * length
    flops = backbone_step_flops(config, tokens, length)
    flops += adapter_step_flops(config, tokens, candidate.k, trainable=candidate.method == "single")
    return flops / seconds / 1e9


def real_unit(precision: str) -> float:
    """Examples/s of one epoch of an RTE adapter on all its training data."""
    spec = get_task("rte")
    splits = load_task_data(spec, "local", GLUE)
    cfg = TrainConfig(epochs=1, batch_size=32, max_length=128, learning_rate=1e-3, precision=precision)
    with tempfile.TemporaryDirectory() as checkpoints:  # a fresh folder: a left-over checkpoint would resume
        result = train_adapter(load_backbone("minilm"), spec, splits, AdapterConfig(reduction_factor=4), cfg,
                               Path(checkpoints))
    return result.history[0]["examples_per_second"]


def parity(task: str, seeds: tuple[int, ...], k: int, steps: int) -> dict:
    """The main test metric of the same few-shot adapter fits in fp32 and bf16."""
    spec = get_task(task)
    base = load_task_data(spec, "local", GLUE)
    metric = f"test_{spec.main_metric}"
    scores: dict[str, list[float]] = {p: [] for p in PRECISIONS}
    for seed in seeds:
        splits = sample_k_shot(spec, base, k, seed)
        for precision in PRECISIONS:
            cfg = TrainConfig(epochs=4, max_steps=steps, batch_size=16, learning_rate=1e-3, seed=seed, precision=precision)
            with tempfile.TemporaryDirectory() as checkpoints:
                result = train_adapter(load_backbone("minilm"), spec, splits, AdapterConfig(reduction_factor=4), cfg,
                                       Path(checkpoints))
            scores[precision].append(result.metrics[metric])
            print(f"parity {task} seed {seed} {precision}: {metric} {scores[precision][-1]:.4f}", flush=True)
    differences = [b - f for b, f in zip(scores["bf16"], scores["fp32"])]
    spread = max(mean_std(scores[p])[1] for p in PRECISIONS)
    return {"task": task, "metric": metric, "k": k, "steps": steps, "seeds": list(seeds), "scores": scores,
            "bf16_minus_fp32": differences, "seed_std": spread, "holds": abs(statistics.mean(differences)) <= spread}


def mean_interval(differences: list[float], level: float = 0.95) -> tuple[float, float]:
    """Student-t interval of the mean of paired differences."""
    half = scipy.stats.t.ppf((1 + level) / 2, len(differences) - 1) * statistics.stdev(differences) / len(differences) ** 0.5
    return statistics.mean(differences) - half, statistics.mean(differences) + half


def single_adapter_bench(batch_size: int, length: int) -> tuple[Bench, dict]:
    """A single trainable adapter on a freshly loaded MiniLM, and a random batch for it."""
    backbone = load_backbone("minilm")
    return Bench(backbone, [CANDIDATES[0]]), random_batch(backbone, batch_size, length)


def bf16_steps(bench: Bench, batch: dict, steps: int) -> list[float]:
    """Wall seconds of `steps` bf16 training steps of the bench's single adapter, as units run them."""
    with autocast("bf16", "cpu"), training_dropout("cpu"):
        return [bench.step_seconds(CANDIDATES[0], batch)["wall"] for _ in range(steps)]


def _steps_worker(steps: int, threads: int, batch_size: int, length: int) -> None:
    """Subprocess entry point: train `steps` steps of a single adapter in bf16 on `threads` threads."""
    torch.set_num_threads(threads)
    bf16_steps(*single_adapter_bench(batch_size, length), steps)


def sharing(steps: int, batch_size: int, length: int) -> dict[str, float]:
    """Steps/s of two units: sequential, two threads of one process, two 1-thread processes."""
    def in_process(concurrent: bool) -> float:
        benches = [single_adapter_bench(batch_size, length) for _ in range(2)]
        started = time.perf_counter()
        if concurrent:
            workers = [threading.Thread(target=bf16_steps, args=(*pair, steps)) for pair in benches]
            [w.start() for w in workers]
            [w.join() for w in workers]
        else:
            [bf16_steps(*pair, steps) for pair in benches]
        return 2 * steps / (time.perf_counter() - started)

    results = {"one after another (2 threads)": in_process(False), "two threads of one process": in_process(True)}
    command = [sys.executable, __file__, "--steps-probe", str(steps), "--batch-size", str(batch_size), "--length", str(length)]
    started = time.perf_counter()
    processes = [subprocess.Popen(command) for _ in range(2)]
    [p.wait() for p in processes]
    # Each process also loads the model (a few seconds): subtract one measured load.
    load = _timed(lambda: load_backbone("minilm"))
    results["two processes of 1 thread"] = 2 * steps / (time.perf_counter() - started - load)
    return results


def compile_probe(repeats: int, batch_size: int, length: int) -> dict:
    """bf16 step time of a single adapter with the encoder under torch.compile against the same model
    without it, and what compiling costs (the first compiled step traces and compiles forward and backward)."""
    bench, batch = single_adapter_bench(batch_size, length)
    try:
        eager = statistics.median(bf16_steps(bench, batch, repeats + 1)[1:])
        bench.model.encoder.compile()
        first = bf16_steps(bench, batch, 1)[0]
        compiled = statistics.median(bf16_steps(bench, batch, repeats))
    finally:
        bench.model.detach()
    saved = eager - compiled
    return {"eager_s": eager, "compiled_s": compiled, "first_step_s": first, "speedup": eager / compiled,
            "break_even_steps": (first - compiled) / saved if saved > 0 else None}


def markdown(result: dict) -> str:
    m, cfg, steps = result["machine"], result["config"], result["step_s"]
    lines = ["# B5: precision and core sharing", "",
             f"Machine: {m['cpu']}, {m['cpu_count']} cores, native bf16: {result['native_bf16']}; torch {m['torch']}, "
             f"transformers {m['transformers']}; load average {m['load_average'][0]:.1f} at start, "
             f"{result['load_average_end'][0]:.1f} at end. Batch {cfg['batch_size']} × length {cfg['length']}, MiniLM, "
             f"pfeiffer r = {ADAPTER.reduction_factor}; median of {cfg['repeats']} interleaved repeats (in parentheses: the "
             "lowest and highest ratio of a single repeat).", "",
             f"Matmul peaks ({cfg['matmul']}²): fp32 {result['peak_gflops']['fp32']:.0f} GFLOP/s, "
             f"bf16 {result['peak_gflops']['bf16']:.0f} GFLOP/s.", "",
             f"Units run {result['attention']} attention here (load_backbone) and the CPU dropout of "
             "peft_core/dropout.py (`adapterflow`; `torch` = PyTorch's dropout, which every unit ran before): "
             "their rows are in bold.", "",
             "| step | attention | dropout | fp32 s | bf16 s | fp32 / bf16 |", "|---|---|---|---:|---:|---:|"]
    for c in CANDIDATES:
        for a in ATTENTION:
            for d in DROPOUT:
                fp32, bf16 = (steps[f"{c.label}/{p}/{a}/{d}"] for p in PRECISIONS)
                bold = "**" if (a, d) == (result["attention"], UNIT_DROPOUT) else ""
                lines.append(f"| {bold}{c.label}{bold} | {a} | {d} | {fp32:.3f} | {bf16:.3f} | {bold}{fp32 / bf16:.2f}×{bold} |")
    lines.append("")
    for c in CANDIDATES:
        g, dropout = result["useful_gflops"][c.label], result["dropout_speedup"][c.label]
        spread = {k: "–".join(f"{x:.2f}" for x in v) for k, v in result["speedup_range"][c.label].items()}
        lines.append(f"- {c.label}: bf16 against fp32, both as units run now: **{result['speedup'][c.label]:.2f}×** "
                     f"(single repeats {spread['bf16']}); the bf16 step now against the fp32 step as units ran before "
                     f"(PyTorch's dropout): **{result['speedup_vs_before'][c.label]:.2f}×** ({spread['vs_before']}); "
                     "the CPU dropout alone: fp32 "
                     f"{dropout['fp32']:.2f}×, bf16 {dropout['bf16']:.2f}×; useful GFLOP/s fp32 → bf16 "
                     f"{g['fp32']:.0f} → {g['bf16']:.0f}.")
    if result.get("real_unit"):
        r = result["real_unit"]
        lines += ["", f"Real unit (RTE adapter, one epoch, 2,241 pairs): fp32 {r['fp32']:.1f} ex/s, bf16 {r['bf16']:.1f} "
                      f"ex/s: **{r['bf16'] / r['fp32']:.2f}×**."]
    if result.get("parity"):
        p = result["parity"]
        low, high = mean_interval(p["bf16_minus_fp32"])
        lines += ["", f"Parity ({p['task']}, k = {p['k']}, {p['steps']} steps, seeds {p['seeds']}): {p['metric']} fp32 "
                      f"{[round(x, 4) for x in p['scores']['fp32']]}, bf16 {[round(x, 4) for x in p['scores']['bf16']]}; "
                      f"mean bf16 − fp32 {statistics.mean(p['bf16_minus_fp32']):+.4f} (95 % t-interval over the seeds "
                      f"[{low:+.4f}, {high:+.4f}]) against a seed std of {p['seed_std']:.4f}: parity "
                      f"{'holds' if p['holds'] else 'does NOT hold'}. The interval bounds how far bf16 can move "
                      "this metric; a difference inside it cannot be told from zero with these seeds."]
    if result.get("compile"):
        c = result["compile"]
        steps_note = (f"it pays after {c['break_even_steps']:.0f} steps of one shape" if c["break_even_steps"]
                      else "it does not pay at any number of steps")
        lines += ["", f"torch.compile (encoder, bf16, single adapter; `--compile`, run {c['when']}): step {c['eager_s']:.3f} s "
                      f"→ {c['compiled_s']:.3f} s (**{c['speedup']:.2f}×**); the first compiled step took "
                      f"{c['first_step_s']:.0f} s, so {steps_note}. Every unit builds its own model and batches "
                      "of new lengths recompile, so units compile at least once each."]
    if result.get("sharing"):
        lines += ["", "| two units on two cores (bf16 steps) | steps/s | vs one after another |", "|---|---:|---:|"]
        base = result["sharing"]["one after another (2 threads)"]
        lines += [f"| {name} | {v:.2f} | {v / base:.2f}× |" for name, v in result["sharing"].items()]
    lines += ["", f"Goal: ≥ {GOAL_SPEEDUP}× training-step throughput. bf16 with the CPU dropout against the fp32 step of "
                  "before: " + ("met" if result["goal_met"] else "NOT met") + "; bf16 alone (both with the CPU dropout): "
                  + ("met" if min(result["speedup"].values()) >= GOAL_SPEEDUP else "not met") + "."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--compile", action="store_true",
                        help="only the torch.compile probe, added to the last results (precision.json)")
    parser.add_argument("--steps-probe", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.steps_probe:
        _steps_worker(args.steps_probe, 1, args.batch_size, args.length)
        return 0
    if args.compile:
        result = json.loads((RESULTS / "precision.json").read_text())
        result["compile"] = compile_probe(args.repeats, args.batch_size, args.length) | {
            "when": f"{time.strftime('%Y-%m-%d %H:%M')}, load average {os.getloadavg()[0]:.1f}"}
        return _write(result)
    repeats = 2 if args.quick else args.repeats
    info = machine()
    backbone_config = load_backbone("minilm").model.config
    repeated = step_times(repeats, 1, args.batch_size, args.length)
    steps = {key: statistics.median(seconds) for key, seconds in repeated.items()}
    attention = attention_implementation()  # what every unit runs on this device, in both precisions

    def unit_step(c: Candidate, precision: str, dropout: str = UNIT_DROPOUT) -> float:
        return steps[f"{c.label}/{precision}/{attention}/{dropout}"]

    def ratio_range(c: Candidate, fp32_dropout: str) -> list[float]:
        """The lowest and highest fp32 / bf16 ratio of one repeat (both run in it, interleaved)."""
        fp32, bf16 = (repeated[f"{c.label}/{p}/{attention}/{d}"] for p, d in (("fp32", fp32_dropout), ("bf16", UNIT_DROPOUT)))
        ratios = [f / b for f, b in zip(fp32, bf16)]
        return [min(ratios), max(ratios)]

    speedup = {c.label: unit_step(c, "fp32") / unit_step(c, "bf16") for c in CANDIDATES}
    speedup_vs_before = {c.label: unit_step(c, "fp32", "torch") / unit_step(c, "bf16") for c in CANDIDATES}
    result = {
        "machine": info, "native_bf16": native_bf16("cpu"),
        "config": {"batch_size": args.batch_size, "length": args.length, "repeats": repeats, "matmul": 2048},
        "step_s": steps, "step_s_repeats": repeated, "attention": attention,
        "speedup": speedup, "speedup_vs_before": speedup_vs_before,
        "speedup_range": {c.label: {"bf16": ratio_range(c, UNIT_DROPOUT), "vs_before": ratio_range(c, "torch")}
                          for c in CANDIDATES},
        "dropout_speedup": {c.label: {p: unit_step(c, p, "torch") / unit_step(c, p) for p in PRECISIONS}
                            for c in CANDIDATES},
        "peak_gflops": {"fp32": matmul_peak_gflops(torch.float32), "bf16": matmul_peak_gflops(torch.bfloat16)},
        "useful_gflops": {c.label: {p: useful_gflops(backbone_config, c, unit_step(c, p), args.batch_size, args.length)
                                    for p in PRECISIONS} for c in CANDIDATES},
        "goal_met": min(speedup_vs_before.values()) >= GOAL_SPEEDUP,
    }
    if not args.quick:
        result["real_unit"] = {p: real_unit(p) for p in PRECISIONS}
        result["parity"] = parity("stsb", (1, 2, 3), 256, 150)
        result["sharing"] = sharing(6, args.batch_size, args.length)
    result["load_average_end"] = list(os.getloadavg())
    return _write(result)


def _write(result: dict) -> int:
    write_result_files("precision", result, markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
