"""Multiple choice (COPA): one logit per (context, choice), compared across the choices."""

import torch
import torch.nn.functional as F

from peft_core.configs import AdapterConfig, TrainConfig
from peft_core.data import DatasetSplits, EncodedSplit, Example
from peft_core.adapter_jobs import build_adapter_model, evaluate_adapter, train_adapter
from peft_core.task_specs import get_task

COPA = get_task("copa")


def copa_examples(n: int) -> list[Example]:
    good, bad = "the film was good", "the film was bad"
    return [Example(("i liked it", "cause"), i % 2, (bad, good) if i % 2 else (good, bad)) for i in range(n)]


def test_multiple_choice_logits_have_one_column_per_choice(tiny_backbone):
    backbone = tiny_backbone("bert")
    model = build_adapter_model(backbone, COPA, AdapterConfig(reduction_factor=4))
    try:
        split = EncodedSplit.from_examples(COPA, copa_examples(6), backbone.tokenizer, 16)
        batch = next(split.batches(6, shuffle=False))
        assert batch["input_ids"].dim() == 3
        out = model(batch, COPA.name)
        assert out.logits.shape == (6, 2)
        assert out.loss is not None and out.loss.item() > 0
    finally:
        model.detach()


def test_each_choice_is_scored_alone_and_the_label_names_the_right_choice(tiny_backbone):
    """Swapping an example's choices swaps its logits, and the loss is the cross-entropy of the logits
    against the label as a choice index: the mapping from choice to label is checked, not only shapes."""
    backbone = tiny_backbone("bert")
    model = build_adapter_model(backbone, COPA, AdapterConfig(reduction_factor=4)).eval()
    try:
        examples = [Example(("i liked it", "cause"), 0, ("the film was good", "the food was awful")),
                    Example(("i hated it", "effect"), 1, ("the plot was great", "the service was bad"))]
        swapped = [Example(ex.texts, 1 - ex.label, ex.choices[::-1]) for ex in examples]

        def scored(exs):
            batch = next(EncodedSplit.from_examples(COPA, exs, backbone.tokenizer, 16).batches(len(exs), shuffle=False))
            with torch.no_grad():
                return model(batch, COPA.name), batch

        (out, batch), (out_swapped, _) = scored(examples), scored(swapped)
        assert batch["labels"].tolist() == [0, 1]
        assert not torch.allclose(out.logits[:, 0], out.logits[:, 1])  # the choices really differ
        torch.testing.assert_close(out_swapped.logits, out.logits.flip(1), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(out.loss, F.cross_entropy(out.logits, torch.tensor([0, 1])))
        torch.testing.assert_close(out_swapped.loss, out.loss, rtol=1e-5, atol=1e-5)  # same choices, same answer
    finally:
        model.detach()


def test_multiple_choice_trains_and_round_trips(tiny_backbone, tmp_path):
    backbone = tiny_backbone("bert")
    splits = DatasetSplits(get_task("copa"), copa_examples(16), copa_examples(8), copa_examples(8))
    cfg = TrainConfig(epochs=1, batch_size=8, max_length=16, learning_rate=1e-3)
    result = train_adapter(backbone, COPA, splits, AdapterConfig(reduction_factor=4), cfg, tmp_path / "copa")
    assert set(result.metrics) == {"validation_accuracy", "test_accuracy"}
    assert evaluate_adapter(tmp_path / "copa", backbone, COPA, splits, 16) == result.metrics
