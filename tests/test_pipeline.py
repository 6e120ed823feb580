"""The training streams: seeded permutations per data epoch, and resuming at any step gives the same
batches as never stopping."""
import itertools

import numpy as np
import pytest

from dataset.pipeline import (
    Shard,
    bucketed_epoch_batches,
    continuous_batches,
    epoch_batches,
    fixed_length,
    padding_share,
    token_lengths,
    training_dataset,
    unlabeled_batches,
    with_unlabeled,
)
from dataset.tokenizer import TextEncoder, TextTokenizer, Vocabulary


def take(ds, k):
    return [b.numpy().tolist() for b in itertools.islice(iter(ds), k)]


def test_each_data_epoch_is_a_permutation_with_a_smaller_last_batch():
    batches = take(epoch_batches(10, 4, seed=1), 9)  # three epochs of 4 + 4 + 2
    assert [len(b) for b in batches] == [4, 4, 2] * 3
    epochs = [sum(batches[3 * e:3 * e + 3], []) for e in range(3)]
    for order in epochs:
        assert sorted(order) == list(range(10))
    assert epochs[0] != epochs[1] != epochs[2]
    assert take(epoch_batches(10, 4, seed=1), 9) == batches
    assert take(epoch_batches(10, 4, seed=2), 3) != batches[:3]


def test_continuous_batches_are_full_and_cover_each_epoch_once():
    batches = take(continuous_batches(6, 4, seed=3), 6)  # 24 positions = 4 data epochs of 6
    assert all(len(b) == 4 for b in batches)
    flat = sum(batches, [])
    for e in range(4):
        assert sorted(flat[6 * e:6 * e + 6]) == list(range(6))
    assert flat[:6] != flat[6:12]


@pytest.mark.parametrize("start", [1, 2, 3, 5, 7])
def test_a_stream_started_at_step_s_is_the_tail_of_the_whole_stream(start):
    whole = take(epoch_batches(10, 4, seed=1), 9)
    assert take(epoch_batches(10, 4, seed=1, start_step=start), 9 - start) == whole[start:]
    whole = take(continuous_batches(7, 3, seed=1), 9)
    assert take(continuous_batches(7, 3, seed=1, start_step=start), 9 - start) == whole[start:]


def test_training_and_unlabeled_streams_resume_at_the_same_batches():
    tok = TextTokenizer("word")
    texts, unlabeled = [f"w{i}" for i in range(10)], ["u0", "u1", "u2"]
    vocab = Vocabulary.build(texts + unlabeled, tok)
    enc = TextEncoder(tok, vocab.tokens, 8)
    labels = np.arange(10) % 2

    def stream(start, k):
        ds = with_unlabeled(training_dataset(texts, labels, enc, 4, seed=0, start_step=start),
                            unlabeled_batches(unlabeled, 2, seed=0, start_step=start), enc)
        return [(x["token_ids"].numpy()[:, 0].tolist(), y.numpy().tolist(), x["unlabeled"]["token_ids"].numpy()[:, 0].tolist())
                for x, y in itertools.islice(iter(ds), k)]

    whole = stream(0, 6)
    ids = [i for b in whole[:3] for i in b[0]]
    assert sorted(ids) == sorted(vocab.tokens.index(t) for t in texts)  # the first epoch sees every text once
    for x, y, _ in whole:
        assert y == [int(vocab.tokens[i][1:]) % 2 for i in x]  # labels stay with their texts
    assert [len(u) for *_, u in whole] == [2] * 6
    assert stream(4, 2) == whole[4:]


def test_length_bucketing_keeps_each_epoch_a_permutation_and_groups_similar_lengths():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 200, size=103)
    stream = take(bucketed_epoch_batches(lengths, 8, seed=1, window=4), 26)  # two epochs of 13 batches
    assert sorted(len(b) for b in stream[:13]) == [7] + [8] * 12
    for epoch in (stream[:13], stream[13:]):
        assert sorted(sum(epoch, [])) == list(range(103))

    def spread(batches):  # mean (longest - shortest) within a batch
        return np.mean([lengths[b].max() - lengths[b].min() for b in batches])

    plain = take(epoch_batches(103, 8, seed=1), 13)
    assert spread(stream[:13]) < 0.5 * spread(plain)
    assert take(bucketed_epoch_batches(lengths, 8, seed=1, window=4, start_step=5), 21) == stream[5:]


def test_padding_share_counts_the_padding_of_random_batches():
    # one batch: padded to 3 tokens each, 12 tokens of which 8 are text
    assert padding_share([1, 3, 2, 2], 4) == pytest.approx(1 / 3)
    assert padding_share([1, 3, 2, 2], 1) == 0.0  # a text per batch: no padding
    assert padding_share([5] * 9, 4) == 0.0
    # two batches of 2 from a seeded permutation: the same sum, computed here from the permutation
    lengths = np.array([1, 9, 1, 9])
    order = np.random.default_rng(7).permutation(4)
    padded = 2 * lengths[order[:2]].max() + 2 * lengths[order[2:]].max()
    assert padding_share(lengths, 2, seed=7) == pytest.approx(1 - 20 / padded)


def test_fixed_length_pads_every_batch_to_max_length_and_token_lengths_count_real_tokens():
    tok = TextTokenizer("word")
    texts = ["a b c", "a", "b c"]
    enc = TextEncoder(tok, Vocabulary.build(texts, tok).tokens, max_length=6)
    fixed = fixed_length(enc, 6)
    import tensorflow as tf
    ids = fixed(tf.constant(texts))["token_ids"]
    assert ids.shape == (3, 6) and np.count_nonzero(ids.numpy()[:, 3:]) == 0
    np.testing.assert_array_equal(token_lengths(texts, enc, batch_size=2), [3, 1, 2])


@pytest.mark.parametrize("workers,replicas", [(2, 1), (2, 2), (3, 1)])
def test_the_workers_pieces_put_together_are_the_global_batches(workers, replicas):
    """11 texts in batches of 4 (the epoch's last batch 3): worker by worker, replica by replica, the pieces are
    the global batch's consecutive rows, padded as the global batch is, sizes differing by at most one, longer
    first."""
    texts = [" ".join(["w"] * (1 + i % 5)) for i in range(11)]
    encoder = TextEncoder(TextTokenizer("word"), Vocabulary.build(texts, TextTokenizer("word")).tokens, 8)
    whole = list(itertools.islice(training_dataset(texts, np.arange(11), encoder, 4, seed=2), 6))
    assert [len(y) for _, y in whole] == [4, 4, 3, 4, 4, 3]
    for features, labels in whole:
        pieces = [piece for w in range(workers)
                  for piece in Shard(w, workers, replicas).pieces(features, labels).as_numpy_iterator()]
        assert len(pieces) == workers * replicas
        assert np.concatenate([y for _, y in pieces]).tolist() == labels.numpy().tolist()
        ids = np.concatenate([x["token_ids"] for x, _ in pieces])
        np.testing.assert_array_equal(ids, features["token_ids"].numpy())
        sizes = [len(y) for _, y in pieces]
        assert sizes == sorted(sizes, reverse=True) and sizes[0] - sizes[-1] <= 1
        assert sum(Shard(w, workers, replicas).rows(len(labels)) for w in range(workers)) == len(labels)
    assert [len(p) for p in Shard(1, 2, 2).pieces(np.arange(7)).as_numpy_iterator()] == [2, 1]
