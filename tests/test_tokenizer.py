import numpy as np
import tensorflow as tf

from dataset.tokenizer import PAD, UNK, TextEncoder, TextTokenizer, Vocabulary


def tokens(tok, text):
    return [t.decode() for t in tok(tf.constant([text]))[0].numpy()]


def test_char_tokenizer_keeps_fullwidth_punctuation_and_collapses_whitespace():
    tok = TextTokenizer("char")
    assert tokens(tok, "好，不错 \t 啊AB") == ["好", "，", "不", "错", " ", "啊", "a", "b"]


def test_word_tokenizer_options():
    text = "Great<br />film, REALLY!"
    assert tokens(TextTokenizer("word", strip_html=True), text) == ["great", "film", ",", "really", "!"]
    assert tokens(TextTokenizer("word", lowercase=False, split_punctuation=False), text) == \
        ["Great<br", "/>film,", "REALLY!"]


def test_vocabulary_ids_frequencies_and_file_round_trip(tmp_path):
    tok = TextTokenizer("word")
    vocab = Vocabulary.build(["a b a c", "a b d"], tok, min_freq=2)
    assert vocab.tokens == [PAD, UNK, "a", "b"] and vocab.counts == [0, 2, 3, 2]
    vocab.save(str(tmp_path / "vocab.tsv"))
    assert Vocabulary.load(str(tmp_path / "vocab.tsv")) == vocab
    assert Vocabulary.build(["a b c d e"], tok, max_size=4).tokens == [PAD, UNK, "a", "b"]


def test_encoder_pads_per_batch_truncates_and_maps_oov_to_1():
    tok = TextTokenizer("word")
    vocab = Vocabulary.build(["x y z"], tok)
    enc = TextEncoder(tok, vocab.tokens, max_length=3)
    x, y, z = (vocab.tokens.index(t) for t in "xyz")
    ids = enc(tf.constant(["x q", "z y x x x", "y"]))["token_ids"].numpy()
    np.testing.assert_array_equal(ids, [[x, 1, 0], [z, y, x], [y, 0, 0]])
    assert enc(tf.constant(["x", "y"]))["token_ids"].shape == (2, 1)  # the batch's longest, not max_length
    assert enc(tf.constant([" ", "  "]))["token_ids"].shape == (2, 1)


def test_lstm_sentence_pairs_join_with_sep_and_trim_longest_first():
    tok = TextTokenizer("word")
    vocab = Vocabulary.build(["a b c d e f", "x y"], tok, pairs=True)
    assert vocab.tokens[:3] == [PAD, UNK, "[SEP]"]
    enc = TextEncoder(tok, vocab.tokens, max_length=6)
    i = vocab.tokens.index
    ids = enc(tf.constant(["a b", "a b c d e f"]), tf.constant(["x y", "x y"]))["token_ids"].numpy()
    np.testing.assert_array_equal(ids, [[i("a"), i("b"), 2, i("x"), i("y"), 0],
                                        [i("a"), i("b"), i("c"), 2, i("x"), i("y")]])


def test_unicode_separators_and_control_characters_split_words_without_breaking_utf8():
    import tensorflow as tf

    texts = tf.constant(["them\u0085there", "a\u00a0b\u3000c\u2028d"])
    words = TextTokenizer("word")(texts).to_list()
    assert words == [[b"them", b"there"], [b"a", b"b", b"c", b"d"]]
    chars = TextTokenizer("char")(tf.constant(["好\u3000\u0085棒"])).to_list()
    assert chars == [["好".encode(), b" ", "棒".encode()]]
