"""B3: transfer parameters per method from configs alone, checked against the papers.

    python benchmarks/param_counts.py            # prints the table, exits 1 on a mismatch

Counts come from the code: every method's compositions are built on the meta device (no memory,
no weights) for the backbone config's hidden size and depth, and their trainable parameters are
counted (`peft_core.parameter_counts.transfer_parameter_count`); HyperFormer(++) is the whole
text-to-text model the library builds on a T5-base built on the meta device, checked against the
closed form. Heads are not counted. Results go to
benchmarks/results/param_counts.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import torch
import transformers
from transformers import AutoModel, AutoModelForSeq2SeqLM, AutoTokenizer, RobertaConfig, T5Config

from peft_core.backbone_paths import resolve_backbone_path
from peft_core.backbones import Backbone, layout_for
from peft_core.compositions import TRANSFER_METHODS
from peft_core.configs import AdapterConfig
from peft_core.hyperformer import HyperNetConfig, make_hyperformer
from peft_core.layernorms import layernorm_parameter_count
from peft_core.method_names import HYPERFORMER_VARIANTS
from peft_core.parameter_counts import transfer_parameter_count
from peft_core.task_specs import get_task

NUM_SOURCES = 8
ROBERTA_BASE = RobertaConfig()  # the defaults are roberta-base: d = 768, 12 layers
T5_BASE = T5Config(d_model=768, d_ff=3072, num_layers=12, num_decoder_layers=12, num_heads=12, d_kv=64)
# METHODS.md §1a, §1b: RoBERTa-base, 8 sources, r = 16.
PUBLISHED = {
    "scalearn": 73_728,
    "scalearn_uniform": 96,
    "scalearn_plus_plus": 6_144,
    "scalearn_uniform_plus_plus": 8,
    "adapterfusion": 21_252_096,
}
PUBLISHED_HYPERFORMER_PP = 5.21e6  # about; T5-base, r = 32, 8 tasks (METHODS.md §2)
RESULTS = Path(__file__).parent / "results"


def roberta_rows() -> list[dict]:
    d, layers = ROBERTA_BASE.hidden_size, ROBERTA_BASE.num_hidden_layers
    with torch.device("meta"):
        layernorms = layernorm_parameter_count(AutoModel.from_config(ROBERTA_BASE))
    rows = []
    for method in TRANSFER_METHODS:
        count = transfer_parameter_count(method, d, layers, NUM_SOURCES, AdapterConfig(),
                                         backbone_layernorm_params=layernorms)
        published = PUBLISHED.get(method)
        notes = ["+ target prompt (l × d)"] if TRANSFER_METHODS[method].uses_prompts else []
        if count != transfer_parameter_count(method, d, layers, NUM_SOURCES, AdapterConfig()):
            notes.append(f"the backbone's LayerNorms ({layernorms:,}) included")
        rows.append({"backbone": "roberta-base", "method": method, "params": count, "published": published,
                     "ok": published is None or count == published, "note": "; ".join(notes)})
    return rows


# ---- HyperFormer rows ------------------------------------------------------------------------------
# The paper's setting: T5-base in text-to-text form, 8 GLUE tasks, r = 32, adapters generated for the
# encoder's and the decoder's blocks. The model is the one the library builds (make_hyperformer) on a
# T5-base built on the meta device: its trainable parameters are counted, and the closed form
# (`hyperformer_parameter_count`, stacks = 2) must agree.
GLUE_TASKS = ("rte", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "cola")
HYPERFORMER_REDUCTION_FACTOR = 32


def t5_base_text_backbone():
    """T5-base, encoder and decoder, with no weights. Built directly rather than by `wrap_backbone`,
    whose fingerprint reads weights; the tokenizer is MiniLM's (T5's is not on this machine): it
    only has to write the label names back, and a text model's targets have no parameters."""
    with torch.device("meta"):
        model = AutoModelForSeq2SeqLM.from_config(T5_BASE).requires_grad_(False)
    tokenizer = AutoTokenizer.from_pretrained(resolve_backbone_path("minilm"))
    return Backbone("t5-base", model, tokenizer, layout_for(T5_BASE), fingerprint="meta", output="text")


def hyperformer_rows() -> list[dict]:
    backbone = t5_base_text_backbone()
    backbone_params = sum(p.numel() for p in backbone.model.parameters())  # T5's LM head is its tied embedding
    specs = [get_task(name) for name in GLUE_TASKS]
    rows = []
    for variant in HYPERFORMER_VARIANTS:
        with torch.device("meta"):
            model = make_hyperformer(backbone, specs, AdapterConfig(reduction_factor=HYPERFORMER_REDUCTION_FACTOR),
                                     HyperNetConfig(variant=variant))
        try:
            counts, closed = model.count_parameters(), model.closed_form_parameter_count()["total"]
        finally:
            model.detach()
        count = counts["excluding_heads"]
        published = PUBLISHED_HYPERFORMER_PP if variant == "hyperformer_plus_plus" else None
        matches_paper = published is None or abs(count - published) / published < 0.01
        per_task = 100 * count / NUM_SOURCES / backbone_params
        note = (f"r = {HYPERFORMER_REDUCTION_FACTOR}, text-to-text (encoder and decoder); {per_task:.2f} % of the "
                f"backbone per task; closed form {closed:,}")
        if published:
            note += " (published: about 5.21M, 0.29 %)"
        rows.append({"backbone": "t5-base", "method": variant, "params": count, "published": published,
                     "closed_form": closed, "ok": matches_paper and count == closed and counts["heads"] == 0,
                     "note": note})
    return rows
# ------------------------------------------------------------------------------------------------


def markdown(rows: list[dict]) -> str:
    lines = [
        f"# B3: transfer parameters per target, {NUM_SOURCES} sources (heads not counted)",
        "",
        f"torch {torch.__version__}, transformers {transformers.__version__}, Python {platform.python_version()}; "
        "counted from the compositions (HyperFormer: the whole text-to-text model) built on the meta device.",
        "",
        "| backbone | method | params | published | match | note |",
        "|---|---|---:|---:|---|---|",
    ]
    for r in rows:
        published = "" if r["published"] is None else f"{r['published']:,.0f}"
        match = "" if r["published"] is None and r["ok"] else ("yes" if r["ok"] else "**NO**")
        lines.append(f"| {r['backbone']} | {r['method']} | {r['params']:,} | {published} | {match} | {r['note']} |")
    lines += ["", "AdapterFusion per layer: W_Q and W_K with biases, W_V without (AdapterHub): 3d² + 2d = "
              "1,771,008 for d = 768; × 12 layers = 21,252,096. It does not grow with the number of sources."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    rows = roberta_rows() + hyperformer_rows()
    table = markdown(rows)
    print(table)
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "param_counts.json").write_text(json.dumps(rows, indent=2))
    (args.output / "param_counts.md").write_text(table)
    failed = [r["method"] for r in rows if not r["ok"]]
    if failed:
        print(f"MISMATCH against the published counts: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
