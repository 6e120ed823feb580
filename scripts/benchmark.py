"""Step time of each regularizer relative to plain training, measured in one process.

    python scripts/benchmark.py [--backbones bilstm bert] [--methods none fgm vat ...] [--output results.json]

For each backbone, one model and one fixed batch of random token ids; every method's train_step is
timed after warm-up (median of --steps steps), and its ratio to the clean step ('none') is printed. The
limits: FGM/FGSM/random need one more forward and backward pass (about 2.0x), VAT with one power
iteration two more (about 3x, target 2.8x), PGD with k steps k more (target k + 1.1).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import trainer  # noqa: E402,F401  (selects tf-keras before TensorFlow loads)

TARGETS = {"none": 1.0, "random": 2.0, "fgsm": 2.0, "fgm": 2.0, "vat": 2.8}


def build(backbone: str, method: str, args):
    import numpy as np
    import tensorflow as tf
    import tf_keras

    from model.bert import TransformerClassifier
    from model.classifier import TextClassifier
    from trainer.adversarial_model import AdversarialModel
    from trainer.config import ModelConfig, RegularizerConfig, TrainConfig
    from trainer.optimizers import make_optimizer

    tf_keras.utils.set_random_seed(0)
    if backbone == "bert":
        from transformers import BertConfig, TFBertModel

        encoder = TFBertModel(BertConfig(vocab_size=30522, hidden_size=args.bert_hidden,
                                         num_hidden_layers=args.bert_layers, num_attention_heads=12,
                                         intermediate_size=4 * args.bert_hidden))
        encoder.build_in_name_scope()
        classifier = TransformerClassifier(encoder, 2)
        batch, length = args.bert_batch, args.length
        ids = np.random.default_rng(0).integers(1000, 30000, size=(batch, length)).astype(np.int32)
        inputs = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    else:
        # The same model for every method, so embedding normalization is on for the clean step too.
        cfg = ModelConfig(name=backbone, embedding_dim=args.embedding_dim, hidden_size=args.hidden, pooling="max",
                          normalize_embeddings=True)
        classifier = TextClassifier(cfg, args.vocab, 2, counts=np.ones(args.vocab))
        batch, length = args.batch, args.length
        inputs = {"token_ids": np.random.default_rng(0).integers(2, args.vocab, size=(batch, length)).astype(np.int32)}
    reg = RegularizerConfig(name=method, epsilon=1.0, steps=args.pgd_steps, step_size=0.5)
    model = AdversarialModel(classifier, [reg])
    model(classifier.example_inputs())
    model.compile(optimizer=make_optimizer(TrainConfig()), jit_compile=args.jit_compile)
    labels = np.arange(batch, dtype=np.int32) % 2
    data = tf.data.Dataset.from_tensors(({k: tf.constant(v) for k, v in inputs.items()}, tf.constant(labels)))
    return model, data.repeat(), batch


def time_steps(model, data, warmup: int, steps: int) -> list[float]:
    step = model.make_train_function()
    iterator = iter(data)
    for _ in range(warmup):
        step(iterator)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        logs = step(iterator)
        float(logs["loss"])  # wait for the step to finish
        times.append(time.perf_counter() - start)
    return times


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--backbones", nargs="+", default=["bilstm", "bert"], choices=["lstm", "bilstm", "bert"])
    parser.add_argument("--methods", nargs="+", default=["none", "random", "fgsm", "fgm", "pgd", "vat"])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--embedding-dim", type=int, default=256)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--vocab", type=int, default=20000)
    parser.add_argument("--bert-batch", type=int, default=16)
    parser.add_argument("--bert-hidden", type=int, default=384)
    parser.add_argument("--bert-layers", type=int, default=6)
    parser.add_argument("--pgd-steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--jit-compile", action="store_true", help="compile train_step with XLA")
    parser.add_argument("--output", help="write the results as JSON")
    args = parser.parse_args(argv)

    results = []
    for backbone in args.backbones:
        base = None
        for method in args.methods:
            model, data, batch = build(backbone, method, args)
            times = time_steps(model, data, args.warmup, args.steps)
            median = statistics.median(times)
            base = median if method == "none" else base
            target = args.pgd_steps + 1.1 if method == "pgd" else TARGETS.get(method)
            results.append({"backbone": backbone, "method": method, "median_step_s": median,
                            "examples_per_s": batch / median, "ratio": median / base if base else None,
                            "target": target})
            r = results[-1]
            ratio = f"{r['ratio']:.2f}x" if r["ratio"] else "-"
            print(f"{backbone:>7} {method:>7}: {median * 1000:8.1f} ms/step  {r['examples_per_s']:8.1f} ex/s  "
                  f"{ratio:>6} (target <= {target}x)", flush=True)
    print("\n| backbone | method | ms/step | examples/s | ratio to none | target |\n|---|---|---|---|---|---|")
    for r in results:
        ratio = f"{r['ratio']:.2f}" if r["ratio"] else "-"
        print(f"| {r['backbone']} | {r['method']} | {r['median_step_s'] * 1000:.1f} | {r['examples_per_s']:.1f} | "
              f"{ratio} | {r['target']} |")
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            json.dump({"args": vars(args), "results": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
