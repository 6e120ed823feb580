"""Probes of what a classifier starting from a language model (model.init_from) gets, and of what fine-tuning did
with it: the measurements docs/RESULTS.md section 5 reads, for a pretrained start that helps less than hoped.

    python -m scripts.probe_language_model --config configs/bilstm_imdb_from_lm.yaml [--set model.init_from=RUN]
                                           [--finetuned RUN ...] [--examples 2000]

For the config's classifier as it starts (its LM's weights) and as random starts of the same size (init_from
left out; --random-starts of them, seeded train.seed, train.seed + 1, ...: one random draw can mislead, their
linear probes differ by several points), on the config's training texts and a sample of its test texts:
- saturation: the share of LSTM units with |h| > 0.9 at every real position of a text (mean over texts);
- spread: the standard deviation across texts of each pooled feature (median over features), for last, max and
  mean pooling: features that hardly vary across texts tell the head nothing;
- a linear probe: logistic regression (L2, standardized features) trained on the frozen pooled features of
  the training texts, its test accuracy, for last, max, mean and concat pooling.
For each --finetuned run (a classifier trained from that LM), how far fine-tuning moved the embeddings: the
median relative change |v - v_lm| / |v_lm| of the 2,000 most frequent words' raw vectors.
"""
from __future__ import annotations

import sys

import trainer  # noqa: F401  (selects tf-keras before TensorFlow loads)
from core import cli
from core.errors import positive_int
from core.loader import load_config
from core.startup import load_tensorflow


def sequences(model, texts, encoder, batch_size=64):
    """Per text: the backbone's output states over its real positions (T, H or 2H), with the model's weights."""
    import tensorflow as tf

    clf, out = model.classifier, []
    for start in range(0, len(texts), batch_size):
        inputs = encoder(tf.constant(texts[start:start + batch_size]))
        x, mask = clf.embed(inputs), clf.padding_mask(inputs)
        for layer in clf.backbone.layers_:
            x = layer(x, mask=mask)
        for states, m in zip(x.numpy(), mask.numpy()):
            out.append(states[m] if m.any() else states[:1])
    return out


def pooled(seqs, bidirectional: bool):
    import numpy as np

    half = seqs[0].shape[-1] // 2
    last = np.stack([np.concatenate([s[-1, :half], s[0, half:]]) if bidirectional else s[-1] for s in seqs])
    feats = {"last": last, "max": np.stack([s.max(0) for s in seqs]), "mean": np.stack([s.mean(0) for s in seqs])}
    feats["concat"] = np.concatenate([feats["last"], feats["max"], feats["mean"]], axis=1)
    return feats


def linear_probe(train_x, train_y, test_x, test_y, l2=1e-2, steps=500, lr=0.1) -> float:
    """Test accuracy of a logistic regression fit by full-batch gradient descent on standardized features."""
    import numpy as np

    mu, sd = train_x.mean(0), train_x.std(0) + 1e-6
    a, b = (train_x - mu) / sd, (test_x - mu) / sd
    classes = int(max(train_y.max(), test_y.max())) + 1
    w, bias = np.zeros((a.shape[1], classes)), np.zeros(classes)
    onehot = np.eye(classes)[train_y]
    for _ in range(steps):
        logits = a @ w + bias
        p = np.exp(logits - logits.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        grad = (p - onehot) / len(a)
        w -= lr * (a.T @ grad + l2 * w)
        bias -= lr * grad.sum(0)
    return float(((b @ w + bias).argmax(1) == test_y).mean())


def probe(cfg, examples: int) -> dict:
    import numpy as np

    from core.registry import BACKBONES
    from trainer.run import build_model, prepare

    prepared = prepare(cfg)
    model = build_model(cfg, prepared, len(prepared.data.label_names))
    rng = np.random.default_rng(0)
    test = prepared.data.test
    pick = rng.choice(len(test.texts), size=min(examples, len(test.texts)), replace=False)
    train_seqs = sequences(model, prepared.data.train.texts, prepared.text_encoder)
    test_seqs = sequences(model, [test.texts[i] for i in pick], prepared.text_encoder)
    bidirectional = BACKBONES[cfg.model.name].bidirectional
    train_f, test_f = pooled(train_seqs, bidirectional), pooled(test_seqs, bidirectional)
    train_y, test_y = np.asarray(prepared.data.train.labels), np.asarray(test.labels)[pick]
    return {
        "saturated units (|h| > 0.9 at every position)": float(np.mean([(np.abs(s) > 0.9).all(0).mean()
                                                                       for s in test_seqs])),
        "max-pooled features > 0.9": float((test_f["max"] > 0.9).mean()),
        **{f"spread across texts, {k}": float(np.median(test_f[k].std(0))) for k in ("last", "max", "mean")},
        **{f"linear probe, {k} (test accuracy)": linear_probe(train_f[k], train_y, test_f[k], test_y)
           for k in ("last", "max", "mean", "concat")},
    }


def movement(run_dir: str, lm_table, words: int = 2000) -> float:
    """Median relative change of the most frequent words' raw vectors between the LM and a fine-tuned run."""
    import numpy as np

    from trainer.restore import load_run

    table = load_run(run_dir).model.classifier.embedding.table.numpy()
    rows = slice(2, 2 + words)  # the vocabulary is ranked by frequency after padding and out-of-vocabulary
    return float(np.median(np.linalg.norm(table[rows] - lm_table[rows], axis=1)
                           / np.maximum(np.linalg.norm(lm_table[rows], axis=1), 1e-9)))


def main(argv=None) -> int:
    parser = cli.parser(__doc__)
    parser.add_argument("--config", required=True, help="a classifier config with model.init_from")
    parser.add_argument("--set", action="append", default=[], help="override a config value (section.key=value)")
    parser.add_argument("--finetuned", nargs="*", default=[], help="classifier runs trained from that language model")
    parser.add_argument("--examples", type=positive_int, default=2000, help="test texts to probe")
    parser.add_argument("--random-starts", type=positive_int, default=3, help="random starts to probe beside the LM")

    def work(args):
        load_tensorflow()
        import dataclasses

        import tf_keras

        from trainer.init_from import read_language_model_run

        cfg = load_config(args.config, args.set)
        cfg.eval.robustness_after_training = False
        print(f"language model {cfg.model.init_from}")
        print("from the language model:")
        for key, value in probe(cfg, args.examples).items():
            print(f"  {key}: {value:.4f}")
        random_start = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, init_from=None))
        found = []
        for seed in range(cfg.train.seed, cfg.train.seed + args.random_starts):
            tf_keras.utils.set_random_seed(seed)  # a random start's weights: reproducible, one draw per seed
            found.append(probe(random_start, args.examples))
        print(f"random starts (seeds {cfg.train.seed}-{cfg.train.seed + args.random_starts - 1}: mean, min-max):")
        for key in found[0]:
            values = [f[key] for f in found]
            print(f"  {key}: {sum(values) / len(values):.4f}, {min(values):.4f}-{max(values):.4f}")
        if args.finetuned:
            lm_table = read_language_model_run(cfg).table
            for run_dir in args.finetuned:
                print(f"{run_dir}: median relative change of the 2,000 most frequent words' vectors "
                      f"{movement(run_dir, lm_table):.4f}")

    return cli.main(parser, work, argv)


if __name__ == "__main__":
    sys.exit(main())
