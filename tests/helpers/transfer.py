"""Adapter banks, compositions and tiny transfer settings for the core-library tests."""

from __future__ import annotations

import json

import torch
from safetensors.torch import load_file

from peft_core.adapters import AdapterBank
from peft_core.artifacts import CONFIG_FILE, WEIGHTS_FILE, save_artifact
from peft_core.compositions import SingleAdapter
from peft_core.configs import AdapterConfig, TrainConfig
from peft_core.model import AdapterModel
from peft_core.task_specs import get_task
from tests.helpers.core import HIDDEN as D

ADAPTER = AdapterConfig(reduction_factor=4, init_std=0.3)  # bottleneck 8; large weights so adapters matter
SPEC = get_task("demo_sentiment")


def random_bank(k, seed=0):
    """A frozen bank of `k` adapters with large random weights."""
    torch.manual_seed(seed)
    bank = AdapterBank(k, D, ADAPTER)
    with torch.no_grad():
        for p in bank.parameters():
            p.normal_(0, 0.3)
    return bank.requires_grad_(False)


def unlabelled_batch(batch_size=3, length=7, seed=1):
    """Random token ids, the first row padded at its last two positions."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(batch_size, length, dtype=torch.long)
    mask[0, -2:] = 0
    return {"input_ids": torch.randint(5, 100, (batch_size, length), generator=g), "attention_mask": mask}


def model_logits(backbone, make_composition, head_state=None, prompt=None):
    """Logits of a model with `make_composition(site)` at every site (eval mode); detaches after."""
    model = AdapterModel(backbone)
    try:
        model.set_compositions(make_composition)
        head = model.add_head(SPEC)
        if head_state is not None:
            head.load_state_dict(head_state)
        model.prompt = prompt
        model.eval()
        with torch.no_grad():
            return model(unlabelled_batch(), SPEC.name).logits, head.state_dict()
    finally:
        model.detach()


def single_adapter_from(bank, j):
    """A SingleAdapter holding adapter `j` of `bank`."""
    single = SingleAdapter(D, ADAPTER)
    single.bank.load_adapter_state(0, bank.adapter_state(j))
    return single
SOURCE_TASKS = ("sst2", "cola")  # any single-sentence two-label specs: the sources only need a name and a head
FAST = TrainConfig(epochs=2, batch_size=8, eval_batch_size=16, learning_rate=1e-3)


def rewritten_source(source_dir, destination, change_config=lambda c: c, change_tensors=lambda t: t):
    """A copy of a source artifact at `destination`, its config and tensors passed through the changes."""
    config = json.loads((source_dir / CONFIG_FILE).read_text())
    save_artifact(destination, change_tensors(load_file(source_dir / WEIGHTS_FILE)), change_config(config))
    return destination
