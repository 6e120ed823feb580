"""In-graph BERT tokenization (tensorflow-text WordPiece) that matches the Hugging Face tokenizer.

BERT's own basic tokenizer (and the Rust `BertNormalizer`) removes control characters, maps every
whitespace character to a space, and, for uncased checkpoints, lower-cases with Unicode rules, then
decomposes (NFD) and drops combining marks. tensorflow-text's own lower-casing folds with NFKC, which maps
full-width punctuation such as '，' to ',' (a different id), so the normalization is done here with
tf.strings and the WordPiece tokenizer gets `lower_case=False`. CJK characters and punctuation are split
by tensorflow-text's BertTokenizer as by BERT's.
"""
from __future__ import annotations

import os

import tensorflow as tf
import tensorflow_text as tf_text
import tf_keras

from core.errors import UserError
from dataset.tokenizer import trim_longest_first


def read_vocab(path: str) -> list[str]:
    if not os.path.exists(path):
        raise UserError(f"{path}: vocabulary file not found (a WordPiece checkpoint ships vocab.txt)")
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f]


def normalize_like_bert(texts, lower_case: bool):
    x = tf.strings.regex_replace(texts, r"[\t\n\r\p{Zs}]", " ")
    x = tf.strings.regex_replace(x, r"[\x{FFFD}\p{Cc}\p{Cf}\p{Co}\p{Cs}]", "")
    if lower_case:
        x = tf.strings.lower(x, encoding="utf-8")
        x = tf_text.normalize_utf8(x, "NFD")
        x = tf.strings.regex_replace(x, r"\p{Mn}", "")
    return x


class WordPieceEncoder(tf_keras.layers.Layer):
    """Raw strings (B,) [and second segments (B,)] -> BERT inputs padded to the batch's longest text:
    {'input_ids', 'attention_mask', 'token_type_ids'}, each (B, T) int32, T <= max_length.

    Args:
        vocab: WordPiece vocabulary in id order (the checkpoint's vocab.txt).
        lower_case: lower-case and strip accents (uncased checkpoints).
        max_length: including [CLS] and [SEP]; pairs are trimmed longest-first.
    """

    def __init__(self, vocab: list[str], lower_case: bool, max_length: int, **kwargs):
        super().__init__(trainable=False, **kwargs)
        for token in ("[CLS]", "[SEP]", "[UNK]", "[PAD]"):
            if token not in vocab:
                raise UserError(f"the WordPiece vocabulary has no {token} token")
        self.lower_case, self.max_length = lower_case, max_length
        ids = {token: i for i, token in enumerate(vocab)}  # a repeated token keeps its last id, as in HF
        table = tf.lookup.StaticVocabularyTable(
            tf.lookup.KeyValueTensorInitializer(list(ids), tf.constant(list(ids.values()), tf.int64)),
            num_oov_buckets=1)
        self.cls_id, self.sep_id, self.pad_id = (ids[t] for t in ("[CLS]", "[SEP]", "[PAD]"))
        self.tokenizer = tf_text.BertTokenizer(table, token_out_type=tf.int64, lower_case=False,
                                               unknown_token="[UNK]")

    def _pieces(self, texts):
        return self.tokenizer.tokenize(normalize_like_bert(texts, self.lower_case)).merge_dims(-2, -1)

    def call(self, texts, texts_b=None):
        segments = [self._pieces(texts)] + ([self._pieces(texts_b)] if texts_b is not None else [])
        segments = trim_longest_first(segments, self.max_length - 1 - len(segments))
        ids, types = tf_text.combine_segments(segments, self.cls_id, self.sep_id)
        return {
            "input_ids": tf.cast(ids.to_tensor(self.pad_id), tf.int32),
            "attention_mask": tf.cast(tf.ones_like(ids).to_tensor(0), tf.int32),
            "token_type_ids": tf.cast(types.to_tensor(0), tf.int32),
        }


class HFTokenizerEncoder:
    """The fallback for checkpoints without a WordPiece vocabulary (SentencePiece, byte-level BPE): the
    checkpoint's Hugging Face tokenizer, run outside the graph through tf.numpy_function. Same inputs and
    outputs as WordPieceEncoder, but a run that uses it cannot be exported as a raw-string SavedModel."""

    def __init__(self, tokenizer, max_length: int):
        self.tokenizer, self.max_length = tokenizer, max_length

    def _encode(self, texts, texts_b=None):
        decode = lambda batch: [t.decode("utf-8") for t in batch]  # noqa: E731
        out = self.tokenizer(decode(texts), decode(texts_b) if texts_b is not None else None,
                             truncation=True, max_length=self.max_length, padding="longest",
                             return_token_type_ids=True, return_tensors="np")
        return tuple(out[k].astype("int32") for k in ("input_ids", "attention_mask", "token_type_ids"))

    def __call__(self, texts, texts_b=None):
        args = [texts] + ([texts_b] if texts_b is not None else [])
        tensors = tf.numpy_function(self._encode, args, [tf.int32] * 3, stateful=False)
        for t in tensors:
            t.set_shape([None, None])
        return dict(zip(("input_ids", "attention_mask", "token_type_ids"), tensors))
