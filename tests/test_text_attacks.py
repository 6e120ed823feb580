"""Text attacks on raw strings, against a keyword 'model' whose probabilities are computed by hand."""
import random

import numpy as np
import pytest

from trainer import text_attacks as T


def keyword_model(texts):
    """p(pos) = 0.9 if the word 'good' is in the text, 0.2 if 'bad' is (and not 'good'), else 0.4."""
    calls.append(len(texts))
    p = [0.9 if "good" in t.split() else 0.2 if "bad" in t.split() else 0.4 for t in texts]
    return np.array([[1 - q, q] for q in p])


calls = []


def test_char_noise_rate_zero_and_one():
    rng = random.Random(0)
    assert T.char_noise("a good film", 0.0, rng) == "a good film"
    noisy = T.char_noise("abcdef ghij", 1.0, random.Random(1))
    assert noisy != "abcdef ghij" and " " in noisy  # white space is never edited
    assert T.char_noise("", 1.0, rng) == ""


def test_char_noise_on_chinese_only_deletes_duplicates_or_swaps():
    text = "这部电影很好看"
    for seed in range(30):
        noisy = T.char_noise(text, 0.5, random.Random(seed))
        assert set(noisy) <= set(text)  # no character that was not there
        assert not any(c in T.LETTERS for c in noisy)


def test_char_noise_edits_about_rate_of_the_characters_and_is_seeded():
    text = "x" * 20000
    noisy = T.char_noise(text, 0.1, random.Random(3))
    assert noisy == T.char_noise(text, 0.1, random.Random(3))
    changed = sum(1 for c in noisy if c != "x") + abs(len(noisy) - len(text))
    assert 0.03 * len(text) < changed < 0.15 * len(text)


def test_tokens_are_words_and_single_chinese_characters():
    text = "I love 这部电影, it's good!"
    assert [text[a:b] for a, b in T.token_spans(text)] == ["I", "love", "这", "部", "电", "影", "it", "s", "good"]
    assert len(T.token_spans("word " * 1000)) == T.MAX_TOKENS


def test_token_edits_are_one_character_transformations():
    edits = T.token_edits("good", random.Random(0))
    assert edits and "good" not in edits and len(set(edits)) == len(edits)
    for e in edits:
        assert abs(len(e) - 4) <= 1 and len(set(e) ^ set("good")) <= 2
    assert T.token_edits("好", random.Random(0)) == ["", "好好"]
    assert "" in T.token_edits("a", random.Random(0))  # a one-letter word can be deleted


def test_batched_predicts_in_sorted_chunks_and_returns_the_original_order():
    calls.clear()
    texts = ["good " * 5, "bad", "x", "good"]
    probs = T.batched(keyword_model, texts, batch_size=3)
    np.testing.assert_allclose(probs[:, 1], [0.9, 0.2, 0.4, 0.9])
    assert calls == [3, 1]


def test_greedy_attack_edits_the_most_important_word_first_and_counts_queries():
    texts = ["the film was good", "bad film", "a plot"]
    labels = [1, 0, 1]  # the third is wrong from the start (p(pos) = 0.4)
    out = T.greedy_attack(keyword_model, texts, labels, budgets=[1, 2], seed=0)
    assert out["budgets"] == [0, 1, 2] and out["examples"] == 3 and out["attacked"] == 2
    # text 1: deleting 'good' drops p(pos) from 0.9 to 0.4: ranked first; any edit of 'good' flips it.
    # text 2: deleting 'bad' raises p(pos) from 0.2 to 0.4, flipping nothing (0.4 < 0.5): editing 'bad' does
    # the same, so it stays right after its first edit, and after its second ('film': no change).
    assert out["accuracy"] == pytest.approx([2 / 3, 1 / 3, 1 / 3])
    assert out["success_rate"] == pytest.approx(0.5)
    good_edits = len(T.token_edits("good", T.example_rng(0, 0, 1)))
    bad_edits = len(T.token_edits("bad", T.example_rng(0, 1, 1)))
    film_edits = len(T.token_edits("film", T.example_rng(0, 1, 2)))
    # clean + one deletion per token + the candidates of each edit
    assert out["queries_per_example"] == pytest.approx(((1 + 4 + good_edits) + (1 + 2 + bad_edits + film_edits)) / 2)


def test_greedy_attack_stops_at_the_budget_and_is_seeded():
    texts = ["good good good good"]
    out = T.greedy_attack(keyword_model, texts, [1], budgets=[1, 3], seed=5)
    # three of four copies edited: one 'good' remains, the prediction stands
    assert out["accuracy"] == [1.0, 1.0, 1.0] and out["success_rate"] == 0.0
    assert out == T.greedy_attack(keyword_model, texts, [1], budgets=[3, 1], seed=5)


@pytest.mark.parametrize("text", ["", "a", "good " * 20000])
def test_empty_one_character_and_huge_texts_get_a_defined_result(text):
    calls.clear()
    out = T.greedy_attack(keyword_model, [text], [1 if "good" in text else 0], budgets=[2], seed=0)
    assert out["examples"] == 1 and len(out["accuracy"]) == 2
    assert sum(calls) <= 1 + T.MAX_TOKENS + 2 * 4  # the long text: its first MAX_TOKENS tokens only
    noise = T.noise_accuracy(keyword_model, [text], [0], [0.0, 0.1])
    assert noise["examples"] == 1 and len(noise["accuracy"]) == 2


def test_noise_accuracy_rate_zero_is_the_clean_accuracy_and_noise_is_per_example():
    texts = ["the film was good"] * 50 + ["bad"] * 50
    labels = [1] * 50 + [0] * 50
    out = T.noise_accuracy(keyword_model, texts, labels, [0.0, 0.3], seed=1)
    assert out["accuracy"][0] == 1.0 and out["accuracy"][1] < 1.0
    # each example's noise depends on its index and the seed only: a batch of one gives the same text
    assert out == T.noise_accuracy(keyword_model, texts, labels, [0.0, 0.3], seed=1, batch_size=7)
