"""Unlabeled text of any size, read from disk as it is used: a corpus is never held whole in memory.

A corpus is one or many files (data.unlabeled: paths or glob patterns), each optionally gzipped:
- `.txt`: one text per line;
- `.jsonl` / `.json` / `.ndjson`: JSON lines, the text under data.text_column (a line that is not a JSON object
  with that text is skipped; Corpus.check, run by the vocabulary's counting pass, names the first one);
- `.tsv` / `.csv`: read whole, as the labelled files are (a header row; the text column).
Blank texts are skipped. Texts moved from the labelled split (data.num_labeled) are held in memory beside the
files. `stream` visits every text once per pass, the files interleaved, in
windows of data.shuffle_buffer texts each shuffled by a stateless seeded permutation, so that the batches of a
run resumed at step s are those an uninterrupted run saw from step s on.
"""
from __future__ import annotations

import glob
import json
import logging
import os
import zlib
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from core.errors import UserError
from dataset.pipeline import Shard
from dataset.progress import Progress
from dataset.readers import open_binary, read_rows

LINE_FORMATS = {"txt": "lines", "jsonl": "jsonl", "json": "jsonl", "ndjson": "jsonl"}
WHOLE_FORMATS = ("tsv", "csv")
AUTOTUNE = tf.data.AUTOTUNE
log = logging.getLogger(__name__)


def _format(path: str) -> str:
    name = path[:-3] if path.endswith(".gz") else path
    ext = os.path.splitext(name)[1].lower().lstrip(".")
    if ext in LINE_FORMATS:
        return LINE_FORMATS[ext]
    if ext in WHOLE_FORMATS:
        return ext
    raise UserError(f"data.unlabeled: {path}: cannot tell the format from the extension '.{ext}'; use .txt (a "
                    "text per line), .jsonl, .tsv or .csv, optionally .gz")


def expand(patterns: list[str]) -> list[str]:
    """The files of data.unlabeled: each entry a file or a glob pattern (sorted matches); one that names nothing
    is an error naming it."""
    files = []
    for pattern in patterns:
        if glob.has_magic(pattern):
            matches = sorted(p for p in glob.glob(pattern) if os.path.isfile(p))
            if not matches:
                raise UserError(f"data.unlabeled: {pattern}: no file matches this pattern")
            files += matches
        elif os.path.isdir(pattern):
            raise UserError(f"data.unlabeled: {pattern}: is a directory; name its files (e.g. {pattern}/*.txt.gz)")
        elif not os.path.exists(pattern):
            raise UserError(f"data.unlabeled: {pattern}: file not found")
        else:
            files.append(pattern)
    return files


@dataclass
class Corpus:
    """Unlabeled texts: `files` streamed from disk (text per line or JSON lines) and `texts` held in memory
    (moved from the labelled split, or read from TSV/CSV files)."""
    files: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    text_column: str = "text"

    @classmethod
    def load(cls, patterns: list[str] | str | None, text_column: str, texts: list[str] | None = None) -> Corpus:
        corpus = cls([], list(texts or []), text_column)
        for path in expand([patterns] if isinstance(patterns, str) else patterns or []):
            if _format(path) in WHOLE_FORMATS:
                corpus.texts += read_rows(path, None, text_column, None).texts
            else:
                _check_readable(path)
                corpus.files.append(path)
        return corpus

    def __bool__(self) -> bool:
        return bool(self.files or self.texts)

    def describe(self) -> str:
        parts = ([f"{len(self.texts)} texts in memory"] if self.texts else []) + (
            [f"{len(self.files)} file(s) streamed from disk ({', '.join(os.path.basename(f) for f in self.files[:3])}"
             + (", ..." if len(self.files) > 3 else "") + ")"] if self.files else [])
        return " and ".join(parts) or "none"

    def lines(self) -> tf.data.Dataset:
        """Every text once, scalar strings: the in-memory texts, then the files' lines interleaved."""
        texts = tf.data.Dataset.from_tensor_slices(tf.constant(self.texts, tf.string, shape=[len(self.texts)]))
        if not self.files:
            return texts
        json_lines = tf.constant([_format(f) == "jsonl" for f in self.files])
        compression = tf.constant(["GZIP" if f.endswith(".gz") else "" for f in self.files])
        column = self.text_column

        def read(path, is_json, gz):
            lines = tf.data.TextLineDataset(path, compression_type=gz)
            return tf.data.Dataset.zip((lines, tf.data.Dataset.from_tensors(is_json).repeat()))

        files = tf.data.Dataset.from_tensor_slices((tf.constant(self.files), json_lines, compression))
        lines = files.interleave(read, cycle_length=min(4, len(self.files)), block_length=16,
                                 num_parallel_calls=AUTOTUNE, deterministic=True)

        def text_of(batch, is_json):
            def parse():
                texts = tf.numpy_function(lambda b: _json_texts(b, column), [batch], tf.string, stateful=False)
                return tf.reshape(texts, tf.shape(batch))

            return tf.where(is_json, tf.cond(tf.reduce_any(is_json), parse, lambda: batch), batch)

        from_files = lines.batch(256).map(text_of, num_parallel_calls=AUTOTUNE, deterministic=True).unbatch()
        stripped = from_files.filter(lambda t: tf.strings.length(tf.strings.strip(t)) > 0)
        return texts.concatenate(stripped)

    def heldout(self, count: int, seed: int, total: int | None = None) -> np.ndarray:
        """A fixed random sample of `count` of the corpus's texts (a language model's held-out texts): a mask, one
        bool per text in `lines()` order, drawn with `seed` (the same for every run of the same corpus and
        seed). Not the first texts: a corpus sorted by anything (IMDB's training file is sorted by label) would
        hold out a biased slice. `total`: the corpus's count() where it is known."""
        total = self.count() if total is None else total
        mask = np.zeros(total, bool)
        mask[np.random.default_rng(seed).choice(total, size=min(count, total), replace=False)] = True
        return mask

    def shard_lines(self, shard: Shard | None, exclude: np.ndarray | None = None) -> tf.data.Dataset:
        """The texts one worker reads, less those where `exclude` (a mask over `lines()`, e.g. `heldout`) is
        true: with at least as many files as workers (and nothing excluded), worker i reads only files i,
        i + count, ... (and the same share of the in-memory texts); else every worker reads the files and keeps
        every count-th text."""
        lines = self.lines() if exclude is None else where(self.lines(), exclude, False)
        if shard is None or shard.count == 1:
            return lines
        if exclude is None and len(self.files) >= shard.count:
            own = Corpus(self.files[shard.index::shard.count], self.texts[shard.index::shard.count], self.text_column)
            log.info("data.unlabeled: worker %d of %d reads %s", shard.index, shard.count, own.describe())
            return own.lines()
        log.info("data.unlabeled: %d file(s) for %d workers: every worker reads all of them and keeps 1 text in "
                 "%d (give at least as many files as workers for each to read only its own)",
                 len(self.files), shard.count, shard.count)
        return lines.shard(shard.count, shard.index)

    def stream(self, batch_size: int, seed: int, buffer: int, start_step: int = 0, exclude: np.ndarray | None = None,
               items=None, shard: Shard | None = None) -> tf.data.Dataset:
        """Endless full batches (B,) of texts from batch `start_step` on: pass after pass over the corpus, each
        cut into windows of `buffer` consecutive texts, every window in an order drawn by a stateless permutation
        seeded by (seed, pass, window), so that the stream depends on nothing else (a resumed run in a new
        process, whatever TensorFlow's global seed, sees the same batches). The texts where `exclude` is true are left out
        (a held-out sample); `items`, if given, maps the stream of texts to the stream of what is batched (a
        language model's token chunks), before the windows are shuffled. With `shard`, batches of the worker's
        share of B from its own texts (`shard_lines`), for its replicas to split (`shard.local()`)."""
        lines = self.shard_lines(shard, exclude)
        if items is not None:
            lines = items(lines)

        def one_pass(p):
            def shuffle(i, window):
                return tf.random.experimental.stateless_shuffle(window, seed=tf.stack([tf.constant(seed, tf.int64),
                                                                                        p * 1_000_003 + i]))

            return lines.batch(buffer).enumerate().map(shuffle).unbatch()

        passes = tf.data.Dataset.range(np.iinfo(np.int64).max).flat_map(one_pass)
        if shard is None:
            return passes.batch(batch_size, drop_remainder=True).skip(start_step)
        return passes.batch(shard.rows(batch_size), drop_remainder=True).skip(start_step)

    def count(self) -> int:
        """The number of texts (one pass, with progress lines on a long one)."""
        return count_items(self.lines(), "data.unlabeled: counting the texts", "texts")

    def fingerprint(self, digest) -> None:
        """Adds what identifies the corpus to `digest` (hashlib): the in-memory texts, and each file's name, size
        and first and last 64 KiB (hashing every line of a large corpus at each resume would take minutes)."""
        for text in self.texts:
            digest.update(text.encode("utf-8") + b"\0")
        for path in self.files:
            size = os.path.getsize(path)
            digest.update(f"{os.path.basename(path)}\0{size}\0".encode())
            with open(path, "rb") as f:
                digest.update(f.read(65536))
                f.seek(max(0, size - 65536))
                digest.update(f.read(65536))

    def check(self) -> None:
        """Reads every file once and names the first line that cannot be used (bad gzip, bad UTF-8, a JSON line
        without the text): the vocabulary's counting pass runs it, so that no bad line surfaces mid-training."""
        for path in self.files:
            is_json = _format(path) == "jsonl"
            progress = Progress(f"data.unlabeled: checking {path}", None, "lines")
            try:
                with open_binary(path) as f:
                    for n, raw in enumerate(f, start=1):
                        if n % 10000 == 0:
                            progress.update(n)
                        try:
                            line = raw.decode("utf-8")
                        except UnicodeDecodeError:
                            raise UserError(f"{path}: line {n}: not valid UTF-8 text") from None
                        if is_json and line.strip() and _json_text(line, self.text_column) is None:
                            raise UserError(f"{path}: line {n}: not a JSON object with a text under "
                                            f"'{self.text_column}'")
                progress.finish()
            except (OSError, EOFError, zlib.error) as e:
                raise UserError(f"{path}: cannot be read ({e})") from None


def count_items(items: tf.data.Dataset, what: str, unit: str, limit: int | None = None) -> int:
    """The number of elements of `items` (up to `limit`), in batches, with progress lines on a long pass."""
    if limit is not None:
        items = items.take(limit)
    progress, n = Progress(what, None, unit), 0
    for size in items.batch(4096).map(lambda b: tf.shape(b, out_type=tf.int64)[0]).prefetch(2):
        n += int(size)
        progress.update(n)
    progress.finish()
    return n


def where(lines: tf.data.Dataset, mask: np.ndarray, value: bool) -> tf.data.Dataset:
    """The texts of `lines` at the positions i where mask[i] is `value` (positions past the mask: not `value`)."""
    table = tf.constant(mask, tf.bool)

    def keep(i, _):
        inside = i < tf.size(table, out_type=tf.int64)
        return tf.equal(tf.logical_and(inside, tf.gather(table, tf.minimum(i, tf.size(table, out_type=tf.int64) - 1))),
                        value)

    return lines.enumerate().filter(keep).map(lambda _, text: text)


def _check_readable(path: str) -> None:
    try:
        with open_binary(path) as f:
            f.read(1)
    except (OSError, EOFError, zlib.error) as e:
        raise UserError(f"data.unlabeled: {path}: cannot be read ({e})") from None


def _json_text(line: str, column: str) -> str | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    text = record.get(column) if isinstance(record, dict) else None
    return text if isinstance(text, str) else None


def _json_texts(batch: np.ndarray, column: str) -> np.ndarray:
    """The texts of a batch of JSON lines (bytes); '' for a line that has none (skipped downstream)."""
    out = [(_json_text(b.decode("utf-8", "replace"), column) or "").encode("utf-8") for b in batch]
    return np.array(out, dtype=object)

