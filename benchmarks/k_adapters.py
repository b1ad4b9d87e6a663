"""B2: what combining K frozen adapters costs per training step, against a FLOP lower bound.

    python benchmarks/k_adapters.py                               # batch 32, length 128, K = 1..16
    python benchmarks/k_adapters.py --repeats 3 --ks 1,8 --batch-size 8 --length 64   # quick look
    python benchmarks/k_adapters.py --kinds lora --ks 8                # LoRA sources alone

On the real MiniLM (all-MiniLM-L6-v2), one training step (forward + backward + AdamW step) of a
target model over K frozen random source adapters, under ScaLearn and under AdapterFusion, is
timed against the step of a single trainable adapter of the same kind: bottleneck adapters
(pfeiffer, r = 16) and LoRA (query and value, rank 12: 18,432 weights per layer against the
bottleneck's 18,840). Everything runs in one process on one batch of random token ids; a kind's
candidates are interleaved in a shuffled order every repeat and the median of the repeats is used,
so load changes on a shared machine hit all of them alike (the kinds, one model each, run one
after the other; each is compared only with its own single adapter).

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

from peft_core.adapter_kinds import adapter_bank, placement_of
from peft_core.backbones import Backbone, load_backbone
from peft_core.compositions import SingleAdapter, get_method
from peft_core.configs import AdapterConfig
from peft_core.model import AdapterModel
from peft_core.sites import AdapterSite, Composition
from peft_core.task_specs import TaskSpec

RESULTS = Path(__file__).parent / "results"
ADAPTERS = {
    "bottleneck": AdapterConfig(),  # pfeiffer, r = 16, ReLU (METHODS §0)
    "lora": AdapterConfig(kind="lora", lora_rank=12, lora_alpha=24.0),  # query and value: the bottleneck's size
}
ADAPTER = ADAPTERS["bottleneck"]
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
    kind: str = "bottleneck"  # a key of ADAPTERS

    @property
    def adapter(self) -> AdapterConfig:
        return ADAPTERS[self.kind]

    @property
    def label(self) -> str:
        name = SINGLE if self.method == SINGLE else f"{self.method}:K={self.k}"
        return name if self.kind == "bottleneck" else f"{self.kind} {name}"

    @property
    def spec(self) -> str:
        """The command-line form `parse` reads: KIND/METHOD:K."""
        return f"{self.kind}/{self.method}:{self.k}"

    @classmethod
    def parse(cls, text: str) -> "Candidate":
        kind, _, rest = text.rpartition("/")
        method, _, k = rest.partition(":")
        return cls(method, int(k or 1), kind or "bottleneck")


# -- building and timing -----------------------------------------------------------------------
def compositions_for(candidate: Candidate, sites: list[AdapterSite]) -> dict[str, Composition]:
    """{site key: composition}: one trainable adapter per site, or the method over K frozen ones."""
    adapter = candidate.adapter
    if candidate.method == SINGLE:
        return {site.key: SingleAdapter.at(site, adapter) for site in sites}
    banks = {site.key: adapter_bank(candidate.k, site.in_features, site.out_features, adapter).requires_grad_(False)
             for site in sites}
    return dict(zip(banks, get_method(candidate.method).compositions(list(banks.values()), adapter)))


class Bench:
    """One model whose sites are switched between candidates (of one adapter kind), each with its own optimizer."""

    def __init__(self, backbone: Backbone, candidates: list[Candidate]):
        if len({c.kind for c in candidates}) != 1:
            raise ValueError("a Bench times candidates of one adapter kind (their sites differ)")
        self.model = AdapterModel(backbone, placement_of(candidates[0].adapter))
        self.model.add_head(SPEC)
        self.model.train()
        self.setups = {}
        for candidate in candidates:
            compositions = compositions_for(candidate, self.model.sites)
            self._use(compositions)
            optimizer = torch.optim.AdamW(self.model.trainable_parameters().values(), lr=3e-4)
            self.setups[candidate] = (compositions, optimizer)

    def _use(self, compositions: dict[str, Composition]) -> None:
        self.model.set_compositions(lambda site: compositions[site.key])

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
ATTENTION_INPUTS = {"query", "key", "value", "qkv"}


def backbone_step_flops(config, tokens: int, length: int, adapter: AdapterConfig = ADAPTER) -> float:
    d, ffn, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    linear = 2 * (4 * d * d + 2 * d * ffn)  # Q, K, V, O and the two FFN projections, per token
    attention = 2 * 2 * length * d  # QKᵀ and AV per token
    forward = layers * (linear + attention)
    # Backward: input gradients only (frozen weights), twice the attention matmuls, and not
    # through the lowest layer's blocks (nothing below its adapter site needs a gradient).
    backward = (layers - 1) * (linear + 2 * attention)
    if adapter.kind == "lora" and ATTENTION_INPUTS & set(adapter.lora_targets):
        # a LoRA on the lowest layer's Q/K/V needs the gradient back through that layer, though not
        # into the layer's input (the Q, K, V projections' input gradients)
        backward += linear - 2 * 3 * d * d + 2 * attention
    return tokens * (forward + backward)


def adapter_weights_per_layer(config, adapter: AdapterConfig) -> int:
    """Weight entries (biases aside) of one adapter in one layer; its forward costs 2 FLOPs per entry and token."""
    d, ffn = config.hidden_size, config.intermediate_size
    if adapter.kind == "lora":
        widths = {"ffn_in": d + ffn, "ffn_out": ffn + d}
        return sum(adapter.lora_rank * widths.get(target, 2 * d) for target in adapter.lora_targets)
    return 2 * d * (d // adapter.reduction_factor) * (2 if adapter.placement == "houlsby" else 1)


def adapter_step_flops(config, tokens: int, num_adapters: int, trainable: bool, adapter: AdapterConfig = ADAPTER) -> float:
    per_adapter = 2 * adapter_weights_per_layer(config, adapter) * (3 if trainable else 2)  # + input gradient (+ weight gradient)
    return tokens * config.num_hidden_layers * num_adapters * per_adapter


def flop_bound(config, candidate: Candidate, tokens: int, length: int) -> float:
    """The candidate's lower-bound FLOPs divided by the single trainable adapter's (of its kind)."""
    backbone = backbone_step_flops(config, tokens, length, candidate.adapter)
    single = backbone + adapter_step_flops(config, tokens, 1, trainable=True, adapter=candidate.adapter)
    if candidate.method == SINGLE:
        return 1.0
    return (backbone + adapter_step_flops(config, tokens, candidate.k, trainable=False, adapter=candidate.adapter)) / single


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
    command = [sys.executable, __file__, "--memory-probe", candidate.spec,
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
        f"MiniLM (all-MiniLM-L6-v2), batch {cfg['batch_size']}, length {cfg['length']}; "
        f"median of {cfg['repeats']} interleaved repeats after {cfg['warmup']} warm-up steps each.",
        "Adapters: " + "; ".join(f"{kind} {json.dumps(settings)}" for kind, settings in cfg["adapters"].items()) + ".",
        "Ratios of median step times to the single trainable adapter's of the same kind, by wall clock and by "
        "process CPU time (with 1 torch thread the CPU time is the step's own compute, whatever else the machine runs).",
        f"Machine: {m['cpu']}, {m['cpu_count']} cores, {m['torch_threads']} torch threads; torch {m['torch']}, "
        f"transformers {m['transformers']}; load average at start {m['load_average'][0]:.1f}, "
        f"at end {result['load_average_end'][0]:.1f}.",
        "Single trainable adapter step (median): " + "; ".join(
            f"{kind} {step['wall']:.3f} s wall, {step['cpu']:.3f} s CPU" for kind, step in result["single_step_s"].items()) + ".",
        "",
        "| adapter | K | FLOP bound | ScaLearn wall | ScaLearn CPU | ScaLearn CPU / bound | AdapterFusion wall | AdapterFusion CPU |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in result["rows"]:
        scalearn, fusion = row.get("scalearn"), row.get("adapterfusion")
        cells = [row["kind"], str(row["k"]), f"{row['bound']:.3f}"]
        cells += ([f"{scalearn['wall']:.3f}", f"{scalearn['cpu']:.3f}", f"{scalearn['cpu'] / row['bound']:.3f}"]
                  if scalearn else ["", "", ""])
        cells += [f"{fusion['wall']:.3f}", f"{fusion['cpu']:.3f}"] if fusion else ["", ""]
        lines.append("| " + " | ".join(cells) + " |")
    if result.get("memory"):
        lines += ["", "| peak memory of one step (fresh process) | step adds (MB) | peak RSS (MB) | vs single |",
                  "|---|---:|---:|---:|"]
        for kind, probes in result["memory"].items():
            single = probes[Candidate(SINGLE, 1, kind).label]["step_peak_mb"]
            for label, mem in probes.items():
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
    batch = random_batch(backbone, args.batch_size, args.length)
    tokens = args.batch_size * args.length
    times, singles, rows, memory, goals = {}, {}, [], {}, {}
    for kind in args.kinds:
        candidates = [Candidate(SINGLE, 1, kind)] + [Candidate(m, k, kind) for m in args.methods for k in args.ks]
        times |= time_candidates(backbone, candidates, batch, args.repeats, args.warmup)
        medians = {c: {clock: statistics.median(t[clock] for t in times[c]) for clock in CLOCKS} for c in candidates}
        single = singles[kind] = medians[candidates[0]]
        for k in args.ks:
            row = {"kind": kind, "k": k, "bound": flop_bound(config, Candidate("scalearn", k, kind), tokens, args.length)}
            row |= {m: {clock: medians[Candidate(m, k, kind)][clock] / single[clock] for clock in CLOCKS}
                    for m in args.methods}
            rows.append(row)
        if not args.skip_memory:
            probes = [Candidate(SINGLE, 1, kind), Candidate("scalearn", 8, kind), Candidate("adapterfusion", 8, kind)]
            memory[kind] = {c.label: measure_memory(c, args) for c in probes}
        goals |= kind_goals(kind, rows, memory.get(kind))
    return {
        "config": {"batch_size": args.batch_size, "length": args.length, "repeats": args.repeats, "warmup": args.warmup,
                   "ks": args.ks, "methods": args.methods, "adapters": {k: ADAPTERS[k].to_dict() for k in args.kinds},
                   "backbone": backbone.describe()},
        "machine": machine_info,
        "load_average_end": list(os.getloadavg()),
        "single_step_s": singles,
        "step_seconds": {c.label: t for c, t in times.items()},
        "rows": rows,
        "memory": memory,
        "goals": goals,
    }


def kind_goals(kind: str, rows: list[dict], memory: dict | None) -> dict[str, bool]:
    """B2's goals for one adapter kind: ScaLearn at K = 8 near the FLOP bound and its step memory."""
    goals = {}
    at_8 = next((r for r in rows if r["kind"] == kind and r["k"] == 8 and "scalearn" in r), None)
    for clock in CLOCKS if at_8 else ():
        ratio = at_8["scalearn"][clock] / at_8["bound"]
        goals[f"{kind}: ScaLearn K=8 within 10 % of the bound by {clock} time ({ratio:.3f}× the bound)"] = \
            ratio <= GOAL_BOUND_SLACK
    if memory:
        ratio = memory[Candidate("scalearn", 8, kind).label]["step_peak_mb"] / memory[Candidate(SINGLE, 1, kind).label]["step_peak_mb"]
        goals[f"{kind}: ScaLearn K=8 step memory ≤ {GOAL_MEMORY_RATIO}× single ({ratio:.2f}×)"] = ratio <= GOAL_MEMORY_RATIO
    return goals


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--ks", type=lambda s: [int(k) for k in s.split(",")], default=[1, 2, 4, 8, 16])
    parser.add_argument("--methods", type=lambda s: s.split(","), default=list(METHODS))
    parser.add_argument("--kinds", type=lambda s: s.split(","), default=list(ADAPTERS), help="adapter kinds, of: " + ", ".join(ADAPTERS))
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--memory-probe", default=None, help=argparse.SUPPRESS)  # internal: KIND/METHOD:K
    args = parser.parse_args(argv)
    if unknown := set(args.kinds) - set(ADAPTERS):
        parser.error(f"--kinds: unknown adapter kind(s) {sorted(unknown)}; use of: {', '.join(ADAPTERS)}")
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
