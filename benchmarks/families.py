"""B5 per backbone family: a training step's time in fp32 and under bf16 autocast on an encoder, T5's
encoder and decoder-only models of MiniLM's size, on this machine.

    python benchmarks/families.py              # about 3 min on 2 cores
    python benchmarks/families.py --repeats 3  # quicker

Each family is a random model with MiniLM's shape (d = 384, 6 layers, 12 heads, FFN 1,536, its
30,522-token vocabulary; Llama and Qwen2 with 6 key-value heads, T5 with its gated FFN as Flan-T5,
T5's encoder alone as adapterflow runs it with a task head): its weights do not change the time of
a step. A step is forward + backward + AdamW of batch 32 at length 128, for one trainable pfeiffer
adapter and for ScaLearn over K = 8 frozen adapters (benchmarks/k_adapters.py's Bench), the plain
(eager) attention and adapterflow's CPU dropout, as units train here. Every (family, candidate,
precision) runs once per repeat, in a shuffled order, in one process; the table gives medians and
the fp32 / bf16 ratio of the medians. Results: benchmarks/results/families.{json,md}.
"""

from __future__ import annotations

import argparse
import copy
import random
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import torch  # noqa: E402
from transformers import (  # noqa: E402
    AutoModel, AutoModelForTextEncoding, AutoTokenizer, BertConfig, GPT2Config, LlamaConfig, Qwen2Config, T5Config,
)

from benchmarks.publish import write_result_files  # noqa: E402
from k_adapters import Bench, Candidate, machine, random_batch  # noqa: E402
from peft_core.backbone_paths import resolve_backbone_path  # noqa: E402
from peft_core.backbones import wrap_backbone  # noqa: E402
from peft_core.dropout import training_dropout  # noqa: E402
from peft_core.precision import autocast  # noqa: E402

VOCAB, D, LAYERS, HEADS, FFN = 30522, 384, 6, 12, 1536
DECODER = dict(vocab_size=VOCAB, hidden_size=D, intermediate_size=FFN, num_hidden_layers=LAYERS,
               num_attention_heads=HEADS, num_key_value_heads=HEADS // 2, max_position_embeddings=512)
CONFIGS = {
    "bert (MiniLM's shape)": BertConfig(vocab_size=VOCAB, hidden_size=D, num_hidden_layers=LAYERS,
                                        num_attention_heads=HEADS, intermediate_size=FFN),
    "t5 encoder (gated FFN)": T5Config(vocab_size=VOCAB, d_model=D, d_kv=D // HEADS, d_ff=FFN, num_layers=LAYERS,
                                       num_heads=HEADS, feed_forward_proj="gated-gelu"),
    "llama": LlamaConfig(**DECODER),
    "qwen2": Qwen2Config(**DECODER),
    "gpt2": GPT2Config(vocab_size=VOCAB, n_embd=D, n_layer=LAYERS, n_head=HEADS, n_inner=FFN, n_positions=512),
}
CANDIDATES = [Candidate("single", 1), Candidate("scalearn", 8)]
PRECISIONS = ("fp32", "bf16")


def family_backbone(name: str, config):
    torch.manual_seed(0)
    config = copy.deepcopy(config)  # T5EncoderModel sets its config's is_encoder_decoder to False
    model_class = AutoModelForTextEncoding if config.is_encoder_decoder else AutoModel
    model = model_class.from_config(config, attn_implementation="eager")
    return wrap_backbone(name, model, AutoTokenizer.from_pretrained(resolve_backbone_path("minilm")))


def step_times(backbones: dict, repeats: int, warmup: int, batch_size: int, length: int) -> dict[tuple, list[float]]:
    """Wall seconds of one step in each repeat, by (family, candidate, precision)."""
    benches = {name: Bench(backbone, CANDIDATES) for name, backbone in backbones.items()}  # one model per backbone
    batches = {name: random_batch(backbone, batch_size, length) for name, backbone in backbones.items()}
    settings = [(f, c, p) for f in CONFIGS for c in CANDIDATES for p in PRECISIONS]
    times: dict[tuple, list[float]] = {s: [] for s in settings}
    try:
        for repeat in range(warmup + repeats):
            order = list(settings)
            random.Random(repeat).shuffle(order)
            for family, candidate, precision in order:
                with autocast(precision, "cpu"), training_dropout("cpu"):
                    seconds = benches[family].step_seconds(candidate, batches[family])["wall"]
                if repeat >= warmup:
                    times[(family, candidate, precision)].append(seconds)
            print(f"repeat {repeat + 1}/{warmup + repeats}", flush=True)
    finally:
        for bench in benches.values():
            bench.model.detach()
    return times


def markdown(result: dict) -> str:
    lines = [
        "# B5 per family: training step time, fp32 against bf16 autocast",
        "",
        f"{result['machine']['cpu']}, {result['machine']['torch_threads']} torch threads (load average before: "
        f"{result['machine']['load_average'][0]:.2f}); batch {result['batch_size']}, length {result['length']}, median of "
        f"{result['repeats']} shuffled repeats after {result['warmup']} warm-up, one process.",
        "",
        "| backbone (random, MiniLM's size) | backbone params | step | fp32 s | bf16 s | fp32 / bf16 |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for row in result["rows"]:
        lines.append(f"| {row['family']} | {row['params']:,} | {row['candidate']} | {row['fp32']:.3f} | "
                     f"{row['bf16']:.3f} | {row['fp32'] / row['bf16']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--length", type=int, default=128)
    args = parser.parse_args(argv)
    measured_on = machine()
    backbones = {name: family_backbone(name, config) for name, config in CONFIGS.items()}
    params = {name: sum(p.numel() for p in backbone.model.parameters()) for name, backbone in backbones.items()}
    times = step_times(backbones, args.repeats, args.warmup, args.batch_size, args.length)
    rows = [{"family": f, "params": params[f], "candidate": c.label,
             **{p: statistics.median(times[(f, c, p)]) for p in PRECISIONS}}
            for f in CONFIGS for c in CANDIDATES]
    result = {"machine": measured_on, "batch_size": args.batch_size, "length": args.length, "repeats": args.repeats,
              "warmup": args.warmup, "rows": rows,
              "times": {f"{f}/{c.label}/{p}": t for (f, c, p), t in times.items()}}
    write_result_files("families", result, markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
