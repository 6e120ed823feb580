"""Shared fixtures: a tiny labelled data set on disk and a tiny-model config for it."""
import os
import random

import pytest

import trainer  # noqa: F401  (selects tf-keras before TensorFlow loads)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
POSITIVE = ["good", "great", "fine", "nice", "love"]
NEGATIVE = ["bad", "awful", "poor", "hate", "worst"]
FILLER = ["the", "movie", "was", "a", "plot", "and", "it", "very"]


def make_texts(n, seed=0):
    """n short English 'reviews' whose label is decided by one sentiment word."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = "pos" if i % 2 else "neg"
        words = rng.sample(FILLER, rng.randint(2, 6)) + [rng.choice(POSITIVE if label == "pos" else NEGATIVE)]
        rng.shuffle(words)
        rows.append((" ".join(words), label))
    return rows


def write_tsv(path, rows, header=("label", "text")):
    with open(path, "w", encoding="utf-8") as f:
        f.write("\t".join(header) + "\n")
        for text, label in rows:
            f.write(f"{label}\t{text}\n")
    return str(path)


def write_tiny_files(folder) -> dict:
    """The tiny data set's three splits (48, 12 and 12 texts) written into `folder`: {split: path}."""
    return {
        "train": write_tsv(os.path.join(folder, "train.tsv"), make_texts(48, seed=1)),
        "dev": write_tsv(os.path.join(folder, "dev.tsv"), make_texts(12, seed=2)),
        "test": write_tsv(os.path.join(folder, "test.tsv"), make_texts(12, seed=3)),
    }


@pytest.fixture
def tiny_files(tmp_path):
    return write_tiny_files(tmp_path)


def tiny_config_dict(files, regularizer="fgm", **sections):
    cfg = {
        "data": {**files, "tokenizer": "word", "batch_size": 8, "max_length": 12},
        # one direction: half the layers to trace; the Bi-LSTM is covered by test_adversarial_model and the
        # shipped configs (test_configs_train)
        "model": {"name": "lstm", "embedding_dim": 8, "hidden_size": 8, "dropout": 0.0,
                  "head_dropout": 0.0},
        "regularizer": regularizer if isinstance(regularizer, (dict, list)) else {"name": regularizer},
        "train": {"epochs": 1, "learning_rate": 0.01},
        # robustness curves cost more than a tiny run's training: on only where a test reads them
        "eval": {"attacks": ["fgm", "pgd"], "epsilons": [0.0, 1.0], "pgd_steps": 2, "robustness_after_training": False},
    }
    for key, values in sections.items():
        cfg[key] = {**cfg.get(key, {}), **values}
    return cfg


WORDS = sorted(set(FILLER + POSITIVE + NEGATIVE + ["cafe", "un", "##believ", "##able", "is", "no"]))
LETTERS = "abcdefghijklmnopqrstuvwxyz"
BERT_VOCAB = (["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS + [c for c in LETTERS if c not in WORDS]
              + [f"##{c}" for c in LETTERS] + list(".,!?'，。好不错") + ["##s"])


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory):
    """A randomly initialized two-layer BERT saved with save_pretrained (tf_model.h5), with vocab.txt."""
    from transformers import BertConfig, TFBertModel

    path = tmp_path_factory.mktemp("tiny_bert")
    config = BertConfig(vocab_size=len(BERT_VOCAB), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0)
    model = TFBertModel(config)
    model.build_in_name_scope()
    model.save_pretrained(str(path))
    (path / "vocab.txt").write_text("\n".join(BERT_VOCAB) + "\n")
    (path / "tokenizer_config.json").write_text('{"do_lower_case": true}')
    return str(path)


TINY_BERT_HUB_NAME = "advtext-test/tiny-bert"


@pytest.fixture(scope="session")
def tiny_bert_hub(tmp_path_factory, tiny_bert_dir):
    """The tiny BERT as a hub download leaves it: HF_HOME/hub/models--<org>--<name>/snapshots/<commit>/
    with refs/main naming the commit. Yields the hub name, with HF_HOME pointing there and HF_HUB_OFFLINE=1,
    so that loading it by name works only through the cache."""
    import shutil

    import huggingface_hub.constants

    home = tmp_path_factory.mktemp("hf_home")
    repo = home / "hub" / ("models--" + TINY_BERT_HUB_NAME.replace("/", "--"))
    commit = "0123456789abcdef0123456789abcdef01234567"
    shutil.copytree(tiny_bert_dir, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HOME", str(home))
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(home / "hub"))
        yield TINY_BERT_HUB_NAME


# The heaviest files first, so that the two xdist workers (pytest.ini) finish together: longest processing
# time first. Within a file the order is kept (the sort is stable).
HEAVY_FIRST = ["test_scripts.py", "test_resume.py", "test_train_end_to_end.py", "test_distribute.py",
               "test_distribute_workers.py", "test_run_experiments.py", "test_bert.py", "test_adversarial_model.py",
               "test_mixed_precision.py", "test_configs_train.py", "test_optimizers.py"]


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(HEAVY_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(HEAVY_FIRST)))


def swap_two_tokens(vocab_tsv):
    """vocab.tsv edited in place: two tokens of the same length swapped (the counts stay in their rows)."""
    lines = open(vocab_tsv, encoding="utf-8").read().splitlines()
    rows = [line.split("\t") for line in lines]
    i, j = next((a, b) for a in range(2, len(rows)) for b in range(a + 1, len(rows))
                if len(rows[a][0]) == len(rows[b][0]))
    rows[i][0], rows[j][0] = rows[j][0], rows[i][0]
    with open(vocab_tsv, "w", encoding="utf-8") as f:
        f.writelines("\t".join(r) + "\n" for r in rows)
