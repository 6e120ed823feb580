"""In-graph tokenization for the LSTM backbones and the vocabulary that maps tokens to ids.

Tokenization runs inside the TensorFlow graph (tf.strings and tensorflow-text), so the tf.data
pipeline and an exported model share one tokenizer that takes raw strings. Ids: 0 is padding, 1 is
out-of-vocabulary, 2.. are the vocabulary's tokens from most to least frequent.
"""
from __future__ import annotations

import collections
import hashlib
import os
from dataclasses import dataclass

import tensorflow as tf
import tensorflow_text as tf_text
import tf_keras

from core.errors import UserError
from core.paths import write_text_atomically
from dataset.progress import Progress

PAD, UNK, SEP = "[PAD]", "[UNK]", "[SEP]"


def _keep_first(rt, lengths):
    return tf.ragged.boolean_mask(rt, tf.ragged.range(rt.row_lengths()) < lengths[:, None])


def trim_longest_first(segments, budget: int):
    """Trims one or two ragged segments to at most `budget` tokens per row in all, like Hugging Face's
    'longest_first' in its fast (Rust) tokenizer: a segment no longer than half the budget is kept whole and
    the other cut to the rest; otherwise both are cut to half the budget."""
    if len(segments) == 1:
        return [segments[0][:, :budget]]
    a, b = segments
    la, lb = a.row_lengths(), b.row_lengths()
    fits = la + lb <= budget
    shorter = tf.minimum(la, lb)
    short_fits = shorter <= budget - shorter
    # When both must be cut, the longer segment (the second on a tie) gets the odd token.
    half, rest = tf.constant(budget // 2, la.dtype), tf.constant(budget - budget // 2, la.dtype)
    both_cut_a = tf.where(la > lb, rest, tf.broadcast_to(half, tf.shape(la)))
    keep_a = tf.where(fits, la, tf.where(short_fits, tf.where(la <= lb, la, budget - lb), both_cut_a))
    keep_b = tf.where(fits, lb, tf.where(short_fits, tf.where(la <= lb, budget - la, lb), budget - both_cut_a))
    return [_keep_first(a, keep_a), _keep_first(b, keep_b)]




class TextTokenizer(tf_keras.layers.Layer):
    """Splits a batch of raw strings (B,) into a ragged batch of token strings (B, None).

    Args:
        mode: 'char' (one token per Unicode character, whitespace runs kept as one space) or 'word'
            (whitespace-separated words).
        lowercase: Unicode lower-casing (tf.strings.lower with UTF-8; no NFKC folding, so full-width
            punctuation keeps its own token).
        split_punctuation: in 'word' mode, every punctuation mark or symbol becomes its own token.
        strip_html: replace HTML tags such as '<br />' with a space.
    """

    def __init__(self, mode="char", lowercase=True, split_punctuation=True, strip_html=False, **kwargs):
        super().__init__(trainable=False, **kwargs)
        self.mode, self.lowercase = mode, lowercase
        self.split_punctuation, self.strip_html = split_punctuation, strip_html
        self._whitespace = tf_text.WhitespaceTokenizer()

    def call(self, texts):
        x = tf.convert_to_tensor(texts, tf.string)
        if self.strip_html:
            x = tf.strings.regex_replace(x, r"<[^>]*>", " ")
        if self.lowercase:
            x = tf.strings.lower(x, encoding="utf-8")
        # Unicode separators and control characters (e.g. U+0085 NEL in IMDB) become plain spaces: the
        # whitespace tokenizer would otherwise cut inside their UTF-8 bytes.
        x = tf.strings.regex_replace(x, r"[\p{Z}\p{Cc}]+", " ")
        if self.mode == "word":
            if self.split_punctuation:
                x = tf.strings.regex_replace(x, r"(\pP|\pS)", r" \1 ")
            return self._whitespace.tokenize(x)
        x = tf.strings.strip(tf.strings.regex_replace(x, r"\s+", " "))
        return tf.strings.unicode_split(x, "UTF-8")

    def get_config(self):
        return {**super().get_config(), "mode": self.mode, "lowercase": self.lowercase,
                "split_punctuation": self.split_punctuation, "strip_html": self.strip_html}


@dataclass
class Vocabulary:
    """Tokens in id order (tokens[0] = PAD, tokens[1] = UNK) and their training-split counts."""
    tokens: list[str]
    counts: list[int]

    def digest(self) -> str:
        """SHA-256 of the tokens in id order and their counts: what ties a vocabulary to the weights trained
        with it (an embedding row belongs to the token at its id)."""
        return hashlib.sha256("\n".join(f"{t}\t{c}" for t, c in zip(self.tokens, self.counts)).encode("utf-8")).hexdigest()

    def __len__(self):
        return len(self.tokens)

    @classmethod
    def build(cls, texts, tokenizer: TextTokenizer, min_freq=1, max_size=50000, batch_size=1024, pairs=False):
        """Counts the tokens of `texts` (a list, or a tf.data.Dataset of strings streamed from disk: one pass,
        the counts of each batch's distinct tokens added up); with `pairs`, id 2 is the separator [SEP] of
        sentence pairs."""
        specials = [PAD, UNK] + ([SEP] if pairs else [])
        if not isinstance(texts, tf.data.Dataset):
            texts = tf.data.Dataset.from_tensor_slices(tf.constant(list(texts), tf.string, shape=[len(texts)]))
        counter: collections.Counter = collections.Counter()
        count = tf.function(lambda batch: tf.unique_with_counts(tokenizer(batch).flat_values)[::2])
        progress, seen = Progress("vocabulary: counting the tokens", None), 0
        for batch in texts.batch(batch_size).prefetch(2):
            tokens, counts = count(batch)
            for token, n in zip(tokens.numpy().tolist(), counts.numpy().tolist()):
                counter[token] += n
            seen += int(batch.shape[0])
            progress.update(seen)
        progress.finish()
        ranked = sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))
        kept = [(t, c) for t, c in ranked if c >= min_freq and t.decode("utf-8") not in specials]
        kept = kept[: max_size - len(specials)]
        unknown = sum(counter.values()) - sum(c for _, c in kept)
        counts = [0, unknown] + [0] * (len(specials) - 2) + [c for _, c in kept]
        return cls(specials + [t.decode("utf-8") for t, _ in kept], counts)

    def save(self, path: str) -> None:
        write_text_atomically(path, "".join(f"{token}\t{count}\n" for token, count in zip(self.tokens, self.counts)),
                              "vocabulary")

    @classmethod
    def load(cls, path: str) -> Vocabulary:
        tokens, counts = [], []
        if not os.path.exists(path):
            raise UserError(f"{path}: vocabulary file not found")
        with open(path, "rb") as f:
            for line_no, raw in enumerate(f, start=1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError:
                    raise UserError(f"{path}: line {line_no}: not valid UTF-8 text") from None
                token, sep, count = line.rstrip("\n").rpartition("\t")
                if not sep or not count.isdigit():
                    raise UserError(f"{path}: line {line_no}: expected 'token<TAB>count'")
                tokens.append(token)
                counts.append(int(count))
        if tokens[:2] != [PAD, UNK]:
            raise UserError(f"{path}: the first two tokens must be {PAD} and {UNK}")
        return cls(tokens, counts)


def vocabulary_digest(vocab) -> str | None:
    """The digest of a vocabulary: a Vocabulary's, or a WordPiece token list's; None for a Hugging Face
    tokenizer (its files are the checkpoint's own)."""
    if isinstance(vocab, Vocabulary):
        return vocab.digest()
    if isinstance(vocab, list):
        return hashlib.sha256("\n".join(vocab).encode("utf-8")).hexdigest()
    return None


class TextEncoder(tf_keras.layers.Layer):
    """Raw strings (B,) -> {'token_ids': (B, T) int32}, T = the batch's longest text, at most `max_length`.

    Sentence pairs (a second batch of strings) become `a [SEP] b`, trimmed longest-first; the vocabulary
    must then hold [SEP] (Vocabulary.build(..., pairs=True)).
    """

    def __init__(self, tokenizer: TextTokenizer, vocabulary: list[str], max_length: int, **kwargs):
        super().__init__(trainable=False, **kwargs)
        self.tokenizer, self.max_length = tokenizer, max_length
        self.sep_id = vocabulary.index(SEP) if SEP in vocabulary else None
        # StringLookup gives 0 to out-of-vocabulary tokens and 1.. to `vocabulary`; shifted by one below
        # so that 0 is free for padding.
        self.lookup = tf_keras.layers.StringLookup(vocabulary=list(vocabulary[2:]), num_oov_indices=1,
                                                   mask_token=None, output_mode="int")

    def ragged_ids(self, texts):
        """Each text's token ids, all of them: (B, None) ragged."""
        tokens = self.tokenizer(texts)
        return tokens.with_flat_values(tf.cast(self.lookup(tokens.flat_values), tf.int32) + 1)

    def call(self, texts, texts_b=None):
        if texts_b is None:
            ids = self.ragged_ids(texts)[:, : self.max_length]
        else:
            if self.sep_id is None:
                raise ValueError("sentence pairs need a vocabulary with [SEP]")
            a, b = trim_longest_first([self.ragged_ids(texts), self.ragged_ids(texts_b)], self.max_length - 1)
            sep = tf.fill([a.nrows(), 1], tf.constant(self.sep_id, tf.int32))
            ids = tf.concat([a, tf.RaggedTensor.from_tensor(sep), b], axis=1)
        ids = ids.to_tensor(default_value=0)
        # A batch whose texts all tokenize to nothing still gets one (padding) position.
        return {"token_ids": tf.pad(ids, [[0, 0], [0, tf.maximum(0, 1 - tf.shape(ids)[1])]])}
