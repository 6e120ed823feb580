"""dataset/corpus.py: unlabeled text streamed from disk (text per line, JSON lines, gzipped or not), shuffled
through a seeded buffer, resumable at any step, checked line by line, fingerprinted."""
import gzip
import hashlib
import itertools
import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from conftest import ROOT

from core.errors import UserError
from dataset.corpus import Corpus, where
from dataset.pipeline import Shard
from dataset.tokenizer import TextTokenizer, Vocabulary


def corpus_files(tmp_path):
    """Three files, 30 texts in all (blank lines and a JSON line without text are skipped)."""
    (tmp_path / "a.txt").write_text("".join(f"plain {i}\n" for i in range(10)) + "\n  \n")
    with gzip.open(tmp_path / "b.txt.gz", "wt", encoding="utf-8") as f:
        f.writelines(f"zipped {i}\n" for i in range(10))
    with gzip.open(tmp_path / "c.jsonl.gz", "wt", encoding="utf-8") as f:
        f.writelines(json.dumps({"text": f"json {i}", "id": i}) + "\n" for i in range(10))
        f.write(json.dumps({"id": 99}) + "\n")
    return sorted(f"plain {i}" for i in range(10)) + [f"zipped {i}" for i in range(10)] + [f"json {i}" for i in range(10)]


def texts_of(ds):
    return [t.decode() for t in ds.as_numpy_iterator()]


def batches(ds, k):
    return [[t.decode() for t in b] for b in itertools.islice(ds.as_numpy_iterator(), k)]


def test_every_text_once_from_files_of_each_format_and_a_glob(tmp_path):
    want = corpus_files(tmp_path)
    corpus = Corpus.load([str(tmp_path / "*.txt*"), str(tmp_path / "c.jsonl.gz")], "text", ["in memory"])
    assert corpus.files == [str(tmp_path / "a.txt"), str(tmp_path / "b.txt.gz"), str(tmp_path / "c.jsonl.gz")]
    lines = texts_of(corpus.lines())
    assert lines[0] == "in memory" and sorted(lines[1:]) == sorted(want)


def test_a_tsv_corpus_is_read_whole_and_bad_names_are_one_line(tmp_path):
    (tmp_path / "u.tsv").write_text("text\nfirst\nsecond\n")
    corpus = Corpus.load(str(tmp_path / "u.tsv"), "text")
    assert corpus.texts == ["first", "second"] and corpus.files == []
    for pattern, message in ((tmp_path / "none*.txt", "no file matches"), (tmp_path / "missing.txt", "file not found"),
                             (tmp_path, "is a directory"), (tmp_path / "u.parquet", "cannot tell the format")):
        if str(pattern).endswith("parquet"):
            (tmp_path / "u.parquet").write_text("x")
        with pytest.raises(UserError, match=message):
            Corpus.load([str(pattern)], "text")


def test_each_pass_is_a_new_order_of_every_text_and_a_resumed_stream_is_the_tail(tmp_path):
    want = corpus_files(tmp_path)
    corpus = Corpus.load([str(tmp_path / "a.txt"), str(tmp_path / "b.txt.gz"), str(tmp_path / "c.jsonl.gz")], "text")
    whole = batches(corpus.stream(batch_size=5, seed=7, buffer=8), 12)  # 30 texts: 6 batches a pass
    first, second = sum(whole[:6], []), sum(whole[6:], [])
    assert sorted(first) == sorted(want) and sorted(second) == sorted(want)
    assert first != second and first != sorted(first)  # shuffled, and anew in each pass
    assert batches(corpus.stream(batch_size=5, seed=7, buffer=8, start_step=4), 8) == whole[4:]
    assert batches(corpus.stream(batch_size=5, seed=8, buffer=8), 6) != whole[:6]  # the seed decides
    tf.random.set_seed(123)  # TensorFlow's global seed (train.py sets train.seed there) changes nothing
    assert batches(corpus.stream(batch_size=5, seed=7, buffer=8, start_step=4), 8) == whole[4:]
    # a fresh process (a resumed run) sees the same batches
    code = ("import json, sys\nsys.path.insert(0, sys.argv[1])\nimport core\nfrom dataset.corpus import Corpus\n"
            "c = Corpus.load(sys.argv[2:], 'text')\n"
            "print(json.dumps([[t.decode() for t in b] for b in c.stream(5, 7, 8, start_step=4).take(8).as_numpy_iterator()]))")
    done = subprocess.run([sys.executable, "-c", code, ROOT, *corpus.files], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == whole[4:]


def test_check_names_the_first_line_that_cannot_be_used(tmp_path):
    (tmp_path / "u.jsonl").write_text('{"text": "fine"}\n\n{"title": "no text"}\n')
    with pytest.raises(UserError, match=r"u.jsonl: line 3: not a JSON object with a text under 'text'"):
        Corpus.load(str(tmp_path / "u.jsonl"), "text").check()
    (tmp_path / "v.txt").write_bytes(b"fine\nbad \xff byte\n")
    with pytest.raises(UserError, match=r"v.txt: line 2: not valid UTF-8"):
        Corpus.load(str(tmp_path / "v.txt"), "text").check()
    (tmp_path / "w.txt.gz").write_bytes(gzip.compress(b"a\nb\n")[:-6])  # a damaged gzip body
    with pytest.raises(UserError, match=r"w.txt.gz: cannot be read"):
        Corpus.load(str(tmp_path / "w.txt.gz"), "text").check()


def test_the_fingerprint_changes_with_a_file(tmp_path):
    corpus_files(tmp_path)

    def digest():
        d = hashlib.sha256()
        Corpus.load(str(tmp_path / "a.txt"), "text").fingerprint(d)
        return d.hexdigest()

    before = digest()
    assert digest() == before
    (tmp_path / "a.txt").write_text("plain 0\n")
    assert digest() != before


def test_a_vocabulary_counted_from_a_stream_equals_one_counted_from_a_list(tmp_path):
    corpus_files(tmp_path)
    corpus = Corpus.load(str(tmp_path / "*.txt*"), "text")
    texts = texts_of(corpus.lines())
    tok = TextTokenizer("word")
    streamed, listed = Vocabulary.build(corpus.lines(), tok, batch_size=7), Vocabulary.build(texts, tok)
    assert streamed == listed
    assert dict(zip(listed.tokens, listed.counts))["plain"] == 10 and listed.counts[1] == 0


def test_each_worker_reads_only_its_own_files_and_together_they_read_each_text_once_per_pass(tmp_path):
    """Four files, two workers of two replicas each: worker 0 reads files 0 and 2, worker 1 files 1 and 3; a
    global batch of 7 is cut into pieces of 2, 2, 2 and 1 (the first 7 % 4 replicas one row longer), so worker 0
    batches 4 of its texts at a time, worker 1 3."""
    names = []
    for f in range(4):
        (tmp_path / f"part{f}.txt").write_text("".join(f"file{f} text{i}\n" for i in range(6)))
        names.append(str(tmp_path / f"part{f}.txt"))
    corpus = Corpus.load(names, "text")
    seen = []
    for index in range(2):
        shard = Shard(index, 2, replicas=2)
        steps = 3 if index == 0 else 4  # one pass over this worker's 12 texts
        pieces = batches(corpus.stream(7, seed=3, buffer=5, shard=shard), steps)
        assert [len(p) for p in pieces] == [4 - index] * steps
        texts = [t for p in pieces for t in p]
        assert {t.split()[0] for t in texts} == {f"file{index}", f"file{index + 2}"}
        assert sorted(texts) == sorted(texts_of(corpus.shard_lines(shard)))
        seen += texts
    assert sorted(seen) == sorted(texts_of(corpus.lines()))


def test_with_fewer_files_than_workers_each_keeps_every_other_text_after_the_held_out_slice(tmp_path):
    (tmp_path / "one.txt").write_text("".join(f"text{i}\n" for i in range(10)))
    corpus = Corpus.load(str(tmp_path / "one.txt"), "text")
    first3 = np.arange(10) < 3
    assert texts_of(corpus.shard_lines(Shard(0, 2), first3)) == ["text3", "text5", "text7", "text9"]
    assert texts_of(corpus.shard_lines(Shard(1, 2), first3)) == ["text4", "text6", "text8"]
    assert texts_of(corpus.shard_lines(None, np.arange(10) < 8)) == ["text8", "text9"]
    # a worker's stream resumed at step s is the tail of its own stream
    whole = batches(corpus.stream(2, seed=1, buffer=4, shard=Shard(1, 2)), 6)
    assert batches(corpus.stream(2, seed=1, buffer=4, start_step=2, shard=Shard(1, 2)), 4) == whole[2:]


def test_the_held_out_texts_are_a_fixed_random_sample_not_the_first_ones(tmp_path):
    """A corpus sorted by label (as IMDB's training file is) must not hold out one label's texts."""
    (tmp_path / "sorted.txt").write_text("".join(f"good {i}\n" for i in range(500)) + "".join(f"bad {i}\n" for i in range(500)))
    corpus = Corpus.load(str(tmp_path / "sorted.txt"), "text")
    mask = corpus.heldout(100, seed=7)
    assert mask.shape == (1000,) and mask.sum() == 100
    np.testing.assert_array_equal(mask, corpus.heldout(100, seed=7))  # the same for every run
    assert not np.array_equal(mask, corpus.heldout(100, seed=8))
    held = texts_of(where(corpus.lines(), mask, True))
    kept = texts_of(corpus.shard_lines(None, mask))
    assert len(held) == 100 and len(kept) == 900 and not set(held) & set(kept)
    assert 30 <= sum(t.startswith("good") for t in held) <= 70  # both halves (binomial 100, 0.5: 5 sd either side)
