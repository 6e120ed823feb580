"""dataset/streams.py: the data streams a run's config chooses (the unlabeled batch for the methods that read
it, dev and test in order, padding to max_length, length bucketing)."""
import numpy as np
import pytest
from conftest import tiny_config_dict

from core.loader import config_from_dict
from dataset.streams import bucketing_lengths, evaluation_streams, training_stream
from trainer.run import prepare


def few_labels(files, regularizer, **data):
    return config_from_dict(tiny_config_dict(files, regularizer, data={"num_labeled": 16, "unlabeled_batch_size": 4,
                                                                        **data}))


@pytest.mark.parametrize("regularizer, reads", [("vat", True), ("smart", True), ("fgm", False), ("none", False),
                                                ([{"name": "fgm"}, {"name": "vat"}], True)])
def test_the_unlabeled_batch_comes_with_a_method_that_reads_it(tiny_files, regularizer, reads):
    cfg = few_labels(tiny_files, regularizer)
    assert cfg.reads_unlabeled is reads
    prepared = prepare(cfg)
    assert len(prepared.data.unlabeled.texts) == 48 - 16  # the labels left out went to the unlabeled stream
    features, labels = next(iter(training_stream(cfg, prepared.data, prepared.text_encoder)))
    assert labels.shape == (8,)
    assert ("unlabeled" in features) is reads
    if reads:
        assert features["unlabeled"]["token_ids"].shape[0] == 4


def test_dev_and_test_are_one_ordered_pass_and_max_length_padding_fixes_the_width(tiny_files):
    cfg = few_labels(tiny_files, "fgm", padding="max_length")
    prepared = prepare(cfg)
    dev, test = evaluation_streams(cfg, prepared.data, prepared.text_encoder)
    for ds, split in ((dev, prepared.data.dev), (test, prepared.data.test)):
        batches = list(ds)
        np.testing.assert_array_equal(np.concatenate([y.numpy() for _, y in batches]), split.labels)
        assert {x["token_ids"].shape[1] for x, _ in batches} == {cfg.data.max_length}
    features, _ = next(iter(training_stream(cfg, prepared.data, prepared.text_encoder)))
    assert features["token_ids"].shape[1] == cfg.data.max_length


def test_bucketing_lengths_follow_the_config(tiny_files):
    on = few_labels(tiny_files, "fgm", length_bucketing="on")
    prepared = prepare(on)
    lengths = bucketing_lengths(on, prepared.data, prepared.text_encoder)
    words = [min(len(t.split()), on.data.max_length) for t in prepared.data.train.texts]
    np.testing.assert_array_equal(lengths, words)  # the word tokenizer: a token per word, cut at max_length
    off = few_labels(tiny_files, "fgm", length_bucketing="off")
    assert bucketing_lengths(off, prepared.data, prepared.text_encoder) is None
    fixed = few_labels(tiny_files, "fgm", padding="max_length")  # auto: off with fixed shapes
    assert bucketing_lengths(fixed, prepared.data, prepared.text_encoder) is None
