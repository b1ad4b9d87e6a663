import pytest
import torch
import transformers

from peft_core.data import EncodedSplit, Example, collate, encode_examples, make_batches
from peft_core.data.encoding import row_length
from peft_core.task_specs import get_task

WORDS = "the film was great not a dog cat is on mat".split()


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    vocab = tmp_path_factory.mktemp("tok") / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    return transformers.BertTokenizer(vocab=str(vocab))


def ids(tokenizer, text):
    return tokenizer.convert_tokens_to_ids(text.split())


def test_single_sentence_rows_are_unpadded(tokenizer):
    rows = encode_examples(get_task("sst2"), [Example(("the film",), 1), Example(("a dog is on the mat",), 0)], tokenizer, 64)
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    assert rows[0]["input_ids"] == [cls, *ids(tokenizer, "the film"), sep]
    assert rows[0]["attention_mask"] == [1] * 4
    assert rows[0]["labels"] == 1 and len(rows[1]["input_ids"]) == 8


def test_pairs_use_segments_and_truncate(tokenizer):
    rows = encode_examples(get_task("rte"), [Example(("the film was great", "a dog"), 0)], tokenizer, 6)
    assert len(rows[0]["input_ids"]) == 6
    assert rows[0]["token_type_ids"][-1] == 1


def test_more_than_two_fields_join_all_but_the_last(tokenizer):
    row = encode_examples(get_task("wic"), [Example(("film", "the film", "a film"), 1)], tokenizer, 64)[0]
    assert row["input_ids"][1:4] == ids(tokenizer, "film the film")


def test_regression_labels_are_floats(tokenizer):
    rows = encode_examples(get_task("stsb"), [Example(("a", "b"), 3)], tokenizer, 64)
    assert rows[0]["labels"] == 3.0 and isinstance(rows[0]["labels"], float)
    assert collate(rows, 0)["labels"].dtype == torch.float32


def test_collate_pads_to_the_longest_row(tokenizer):
    rows = encode_examples(get_task("sst2"), [Example(("the",), 0), Example(("the film was great",), 1)], tokenizer, 64)
    batch = collate(rows, tokenizer.pad_token_id)
    assert batch["input_ids"].shape == (2, 6)
    assert batch["input_ids"][0, 3:].tolist() == [tokenizer.pad_token_id] * 3
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0, 0, 0], [1] * 6]
    assert batch["labels"].tolist() == [0, 1] and batch["labels"].dtype == torch.long


def test_multiple_choice_is_batch_by_choice_by_token(tokenizer):
    copa = get_task("copa")
    examples = [Example(("the dog", "cause"), 1, ("a cat", "the film was great")), Example(("a", "effect"), 0, ("a", "b"))]
    rows = encode_examples(copa, examples, tokenizer, 64)
    assert len(rows[0]["input_ids"]) == 2 and rows[0]["labels"] == 1
    batch = collate(rows, tokenizer.pad_token_id)
    longest = max(len(choice) for row in rows for choice in row["input_ids"])
    assert batch["input_ids"].shape == (2, 2, longest)
    assert batch["attention_mask"].sum().item() == sum(len(c) for row in rows for c in row["input_ids"])


def fake_rows(lengths):
    return [{"input_ids": [1] * n, "attention_mask": [1] * n, "labels": 0} for n in lengths]


def test_training_batches_cover_every_index_once_and_group_lengths():
    lengths = [(i * 37) % 120 + 3 for i in range(1000)]
    batches = make_batches(fake_rows(lengths), 8, shuffle=True, seed=1, epoch=0)
    flat = [i for batch in batches for i in batch]
    assert sorted(flat) == list(range(1000))
    padded = sum(max(lengths[i] for i in b) * len(b) for b in batches)
    assert padded < 1.1 * sum(lengths)


def test_training_batches_depend_on_seed_and_epoch_only():
    rows = fake_rows([(i * 7) % 30 + 1 for i in range(300)])
    first = make_batches(rows, 16, shuffle=True, seed=3, epoch=2)
    assert first == make_batches(rows, 16, shuffle=True, seed=3, epoch=2)
    assert first != make_batches(rows, 16, shuffle=True, seed=3, epoch=3)
    assert first != make_batches(rows, 16, shuffle=True, seed=4, epoch=2)


def test_eval_batches_are_sorted_by_length():
    lengths = [5, 2, 9, 2, 7]
    batches = make_batches(fake_rows(lengths), 2, shuffle=False, seed=0)
    assert batches == [[1, 3], [0, 4], [2]]


def test_row_length_of_multiple_choice_is_the_longest_choice():
    assert row_length({"input_ids": [[1, 2], [1, 2, 3]]}) == 3


def test_encoded_split_yields_collated_batches(tokenizer):
    spec = get_task("sst2")
    examples = [Example((" ".join(WORDS[: i % 6 + 1]),), i % 2) for i in range(20)]
    split = EncodedSplit.from_examples(spec, examples, tokenizer, 64)
    batches = list(split.batches(8, shuffle=True, seed=0))
    assert len(batches) == split.num_batches(8) == 3
    assert sum(len(b["labels"]) for b in batches) == len(split) == 20
    assert all(set(b) == {"input_ids", "attention_mask", "token_type_ids", "labels"} for b in batches)
    assert split.digest == EncodedSplit.from_examples(spec, examples, tokenizer, 64).digest
