"""B2: what combining K frozen adapters costs per training step, against a FLOP lower bound.

    python benchmarks/k_adapters.py                               # batch 32, length 128, K = 1..16
    python benchmarks/k_adapters.py --repeats 3 --ks 1,8 --batch-size 8 --length 64   # quick look

On the real MiniLM (all-MiniLM-L6-v2), one training step (forward + backward + AdamW step) of a
target model over K frozen random source adapters, under ScaLearn and under AdapterFusion, is
timed against the step of a single trainable adapter. Everything runs in one process on one
batch of random token ids; the candidates are interleaved in a shuffled order every repeat and
the median of the repeats is used, so load changes on a shared machine hit all of them alike.

The lower bound is FLOP-based: backbone forward + backward (input gradients only, the backbone
is frozen, and nothing below the lowest adapter site) + the adapters' FLOPs (a frozen adapter
costs its forward and its input gradient, a trainable one its weight gradient too), divided by
the same sum for the single adapter.

Peak memory: each measured step runs in a fresh subprocess; the figure is the kernel's peak
resident set size during one step (VmHWM, reset just before the step through
/proc/self/clear_refs, Linux only) minus the resident size just before it, i.e. what the step
itself adds on top of the loaded model. (`ru_maxrss` cannot be reset, and loading the weights
peaks higher than a small step, so it would hide the step.)
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import transformers

from peft_core.adapters import AdapterBank
from peft_core.backbones import Backbone, load_backbone
from peft_core.compositions import SingleAdapter, get_method
from peft_core.configs import AdapterConfig
from peft_core.model import AdapterModel
from peft_core.task_specs import TaskSpec

RESULTS = Path(__file__).parent / "results"
ADAPTER = AdapterConfig()  # pfeiffer, r = 16, ReLU (METHODS §0)
SPEC = TaskSpec("k_adapters_benchmark", "demo", "classification", ("sentence",), ("a", "b"), ("accuracy",),
                "Benchmark task.")
METHODS = ("scalearn", "adapterfusion")
SINGLE = "single"
CLOCKS = ("wall", "cpu")
GOAL_BOUND_SLACK = 1.10  # ScaLearn at K = 8 within 10 % of the bound
GOAL_MEMORY_RATIO = 1.3


@dataclass(frozen=True)
class Candidate:
    method: str  # "single" or a transfer method
    k: int

    @property
    def label(self) -> str:
        return SINGLE if self.method == SINGLE else f"{self.method}:K={self.k}"

    @classmethod
    def parse(cls, text: str) -> "Candidate":
        method, _, k = text.partition(":")
        return cls(method, int(k or 1))


# -- building and timing -----------------------------------------------------------------------
def compositions_for(candidate: Candidate, backbone: Backbone) -> list:
    d, layers = backbone.hidden_size, backbone.num_layers
    if candidate.method == SINGLE:
        return [SingleAdapter(d, ADAPTER) for _ in range(layers)]
    banks = [AdapterBank(candidate.k, d, ADAPTER).requires_grad_(False) for _ in range(layers)]
    return get_method(candidate.method).compositions(banks, ADAPTER)


class Bench:
    """One model whose sites are switched between candidates, each with its own optimizer."""

    def __init__(self, backbone: Backbone, candidates: list[Candidate]):
        self.model = AdapterModel(backbone)
        self.model.add_head(SPEC)
        self.model.train()
        self.setups = {}
        for candidate in candidates:
            compositions = compositions_for(candidate, backbone)
            self._use(compositions)
            optimizer = torch.optim.AdamW(self.model.trainable_parameters().values(), lr=3e-4)
            self.setups[candidate] = (compositions, optimizer)

    def _use(self, compositions: list) -> None:
        self.model.set_compositions(lambda site: compositions[site.layer])

    def step_seconds(self, candidate: Candidate, batch: dict) -> dict[str, float]:
        """One training step's wall-clock and process CPU seconds."""
        compositions, optimizer = self.setups[candidate]
        self._use(compositions)
        wall, cpu = time.perf_counter(), time.process_time()
        self.model(batch, SPEC.name).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu}


def random_batch(backbone: Backbone, batch_size: int, length: int, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    vocab = backbone.model.config.vocab_size
    return {
        "input_ids": torch.randint(1000, vocab, (batch_size, length), generator=g),
        "attention_mask": torch.ones(batch_size, length, dtype=torch.long),
        "labels": torch.randint(0, 2, (batch_size,), generator=g),
    }


def time_candidates(backbone: Backbone, candidates: list[Candidate], batch: dict, repeats: int,
                    warmup: int, seed: int = 0) -> dict[Candidate, list[dict[str, float]]]:
    bench = Bench(backbone, candidates)
    try:
        for candidate in candidates:
            for _ in range(warmup):
                bench.step_seconds(candidate, batch)
        times: dict[Candidate, list[dict[str, float]]] = {c: [] for c in candidates}
        rng = random.Random(seed)
        for repeat in range(repeats):
            order = list(candidates)
            rng.shuffle(order)
            for candidate in order:
                times[candidate].append(bench.step_seconds(candidate, batch))
            print(f"repeat {repeat + 1}/{repeats}: " + ", ".join(
                f"{c.label} {times[c][-1]['wall']:.2f}s (cpu {times[c][-1]['cpu']:.2f}s)" for c in candidates), flush=True)
        return times
    finally:
        bench.model.detach()


# -- the FLOP lower bound ----------------------------------------------------------------------
def backbone_step_flops(config, tokens: int, length: int) -> float:
    d, ffn, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    linear = 2 * (4 * d * d + 2 * d * ffn)  # Q, K, V, O and the two FFN projections, per token
    attention = 2 * 2 * length * d  # QKᵀ and AV per token
    forward = layers * (linear + attention)
    # Backward: input gradients only (frozen weights), twice the attention matmuls, and not
    # through the lowest layer's blocks (nothing below its adapter site needs a gradient).
    backward = (layers - 1) * (linear + 2 * attention)
    return tokens * (forward + backward)


def adapter_step_flops(config, tokens: int, num_adapters: int, trainable: bool) -> float:
    d = config.hidden_size
    m = d // ADAPTER.reduction_factor
    forward = 2 * (d * m + m * d)
    per_adapter = forward * (3 if trainable else 2)  # + input gradient (+ weight gradient)
    return tokens * config.num_hidden_layers * num_adapters * per_adapter


def flop_bound(config, candidate: Candidate, tokens: int, length: int) -> float:
    """The candidate's lower-bound FLOPs divided by the single trainable adapter's."""
    backbone = backbone_step_flops(config, tokens, length)
    single = backbone + adapter_step_flops(config, tokens, 1, trainable=True)
    if candidate.method == SINGLE:
        return 1.0
    return (backbone + adapter_step_flops(config, tokens, candidate.k, trainable=False)) / single


# -- peak memory, one fresh process per candidate ----------------------------------------------
def _status_mb(field: str) -> float:
    """VmRSS / VmHWM of this process from /proc, in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def probe_memory(candidate: Candidate, batch_size: int, length: int, threads: int | None) -> dict:
    """Run inside a fresh process: one training step, and how far it raised the resident set.

    The kernel's high-water mark is reset to the current RSS just before the step (writing 5 to
    /proc/self/clear_refs), so loading the model, which can peak higher than a small step, does
    not hide the step's own peak.
    """
    if threads:
        torch.set_num_threads(threads)
    backbone = load_backbone("minilm")
    bench = Bench(backbone, [candidate])
    batch = random_batch(backbone, batch_size, length)
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")
    rss_before = _status_mb("VmRSS")
    bench.step_seconds(candidate, batch)
    peak = _status_mb("VmHWM")
    return {"candidate": candidate.label, "rss_before_step_mb": rss_before, "peak_rss_mb": peak,
            "step_peak_mb": peak - rss_before}


def measure_memory(candidate: Candidate, args) -> dict:
    command = [sys.executable, __file__, "--memory-probe", f"{candidate.method}:{candidate.k}",
               "--batch-size", str(args.batch_size), "--length", str(args.length)]
    if args.threads:
        command += ["--threads", str(args.threads)]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


# -- report ------------------------------------------------------------------------------------
def cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), platform.processor())


def machine() -> dict:
    return {"cpu": cpu_name(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "transformers": transformers.__version__, "python": platform.python_version(),
            "load_average": list(os.getloadavg())}


def markdown(result: dict) -> str:
    cfg, m = result["config"], result["machine"]
    lines = [
        "# B2: cost of combining K frozen adapters (training step / single trainable adapter)",
        "",
        f"MiniLM (all-MiniLM-L6-v2), batch {cfg['batch_size']}, length {cfg['length']}, pfeiffer r = 16; "
        f"median of {cfg['repeats']} interleaved repeats after {cfg['warmup']} warm-up steps each.",
        "Ratios of median step times to the single trainable adapter's, by wall clock and by process CPU "
        "time (with 1 torch thread the CPU time is the step's own compute, whatever else the machine runs).",
        f"Machine: {m['cpu']}, {m['cpu_count']} cores, {m['torch_threads']} torch threads; torch {m['torch']}, "
        f"transformers {m['transformers']}; load average at start {m['load_average'][0]:.1f}, "
        f"at end {result['load_average_end'][0]:.1f}.",
        f"Single trainable adapter step (median): {result['single_step_s']['wall']:.3f} s wall, "
        f"{result['single_step_s']['cpu']:.3f} s CPU.",
        "",
        "| K | FLOP bound | ScaLearn wall | ScaLearn CPU | ScaLearn CPU / bound | AdapterFusion wall | AdapterFusion CPU |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in result["rows"]:
        scalearn, fusion = row.get("scalearn"), row.get("adapterfusion")
        cells = [str(row["k"]), f"{row['bound']:.3f}"]
        cells += ([f"{scalearn['wall']:.3f}", f"{scalearn['cpu']:.3f}", f"{scalearn['cpu'] / row['bound']:.3f}"]
                  if scalearn else ["", "", ""])
        cells += [f"{fusion['wall']:.3f}", f"{fusion['cpu']:.3f}"] if fusion else ["", ""]
        lines.append("| " + " | ".join(cells) + " |")
    if result.get("memory"):
        lines += ["", "| peak memory of one step (fresh process) | step adds (MB) | peak RSS (MB) | vs single |",
                  "|---|---:|---:|---:|"]
        single = result["memory"][SINGLE]["step_peak_mb"]
        for label, mem in result["memory"].items():
            lines.append(f"| {label} | {mem['step_peak_mb']:.0f} | {mem['peak_rss_mb']:.0f} | "
                         f"{mem['step_peak_mb'] / single:.2f}× |")
    lines += ["", "Goals: " + "; ".join(f"{k}: {'met' if v else 'NOT met'}" for k, v in result["goals"].items()),
              "", "Bound: backbone forward + input-gradient backward FLOPs + K frozen adapters (forward + input "
              "gradient), over backbone + one trainable adapter (forward + input and weight gradients). "
              "Memory: peak RSS during one step (VmHWM reset before it) minus RSS before it, each in a fresh process."]
    return "\n".join(lines) + "\n"


def run(args) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    machine_info = machine()
    backbone = load_backbone("minilm")
    config = backbone.model.config
    candidates = [Candidate(SINGLE, 1)] + [Candidate(m, k) for m in args.methods for k in args.ks]
    batch = random_batch(backbone, args.batch_size, args.length)
    times = time_candidates(backbone, candidates, batch, args.repeats, args.warmup)
    medians = {c: {clock: statistics.median(t[clock] for t in steps) for clock in CLOCKS} for c, steps in times.items()}
    single = medians[Candidate(SINGLE, 1)]
    tokens = args.batch_size * args.length
    rows = []
    for k in args.ks:
        row = {"k": k, "bound": flop_bound(config, Candidate("scalearn", k), tokens, args.length)}
        row |= {m: {clock: medians[Candidate(m, k)][clock] / single[clock] for clock in CLOCKS} for m in args.methods}
        rows.append(row)
    memory = {}
    if not args.skip_memory:
        for candidate in [Candidate(SINGLE, 1), Candidate("scalearn", 8), Candidate("adapterfusion", 8)]:
            memory[candidate.label] = measure_memory(candidate, args)
    goals = {}
    at_8 = next((r for r in rows if r["k"] == 8 and "scalearn" in r), None)
    for clock in CLOCKS if at_8 else ():
        ratio = at_8["scalearn"][clock] / at_8["bound"]
        goals[f"ScaLearn K=8 within 10 % of the bound by {clock} time ({ratio:.3f}× the bound)"] = ratio <= GOAL_BOUND_SLACK
    if memory:
        ratio = memory["scalearn:K=8"]["step_peak_mb"] / memory[SINGLE]["step_peak_mb"]
        goals[f"ScaLearn K=8 step memory ≤ {GOAL_MEMORY_RATIO}× single ({ratio:.2f}×)"] = ratio <= GOAL_MEMORY_RATIO
    return {
        "config": {"batch_size": args.batch_size, "length": args.length, "repeats": args.repeats, "warmup": args.warmup,
                   "ks": args.ks, "methods": args.methods, "adapter": ADAPTER.to_dict(), "backbone": backbone.describe()},
        "machine": machine_info,
        "load_average_end": list(os.getloadavg()),
        "single_step_s": single,
        "step_seconds": {c.label: t for c, t in times.items()},
        "median_step_s": {c.label: v for c, v in medians.items()},
        "rows": rows,
        "memory": memory,
        "goals": goals,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--ks", type=lambda s: [int(k) for k in s.split(",")], default=[1, 2, 4, 8, 16])
    parser.add_argument("--methods", type=lambda s: s.split(","), default=list(METHODS))
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--memory-probe", default=None, help=argparse.SUPPRESS)  # internal: method:K
    args = parser.parse_args(argv)
    if args.memory_probe:
        print(json.dumps(probe_memory(Candidate.parse(args.memory_probe), args.batch_size, args.length, args.threads)))
        return 0
    result = run(args)
    table = markdown(result)
    print(table)
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "k_adapters.json").write_text(json.dumps(result, indent=2))
    (args.output / "k_adapters.md").write_text(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
