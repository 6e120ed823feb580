"""Speed of training, of the input pipeline and of the exported model, measured in one process.

    python -m scripts.benchmark [--backbones bilstm bert] [--methods none fgm vat ...] [--language-model]
                                [--mixed-precision bfloat16] [--data ../shared/data/imdb] [--output results.json]

Steps of one backbone (every method, every precision) are timed interleaved: --rounds rounds, each timing
--steps steps of every model in turn, so that a busy stretch of a shared machine falls on all of them; a ratio
is the median of the rounds' ratios, printed with their range.

1. Methods: for each backbone, one model and one fixed batch of random token ids; every method's
   train_step is timed after warm-up (median of --steps steps), with its ratio to the clean step
   ('none') and the peak memory of the step. The limits: FGM/FGSM/random need one more forward and
   backward pass (target 2.0x), VAT with one power iteration a forward and backward pass to the input
   besides (target 2.5x), PGD with k steps k more (target k + 1.1). A method that replays each batch
   (free) makes several updates a step: its cost per epoch-equivalent is its step over its updates
   (target 1.3x the clean step).
2. Options, on the first backbone with fgm: train.jit_compile (XLA), train.steps_per_execution, and
   train.mixed_precision (GPUs only), each as a ratio to the plain fgm step.
3. Data path (with --data, an IMDB-style directory): examples per second of the input pipeline alone,
   and of Bi-LSTM training, with per-batch padding, length bucketing and padding to max_length, with
   the share of padding tokens of each.
4. Inference: sentences per second of the exported SavedModel on raw strings, batch 1 and batch 64.
5. With --language-model: the language model's training step (ms, predicted tokens per second), at the sizes
   of ../shared/bench/anchor_bilstm_torch.py's (MODE=lm) by default.
"""
from __future__ import annotations

import os
import statistics
import sys
import time

import trainer  # noqa: F401  (selects tf-keras before TensorFlow loads)
from core import cli
from core.paths import write_json_atomically
from core.startup import load_tensorflow

TARGETS = {"none": 1.0, "random": 2.0, "fgsm": 2.0, "fgm": 2.0, "vat": 2.5, "free": 1.3}


def build(backbone: str, method: str, args, jit_compile: bool = False, steps_per_execution: int = 1,
          mixed_precision: str = "none"):
    """The model training builds (trainer.families.make_model) at the benchmark's sizes, randomly
    initialized, with one fixed batch of random token ids."""
    import numpy as np
    import tensorflow as tf
    import tf_keras

    from core.loader import regularizer
    from core.registry import BACKBONES, METHODS
    from core.schema import Config, ModelConfig, TrainConfig
    from dataset.tokenizer import Vocabulary
    from trainer.families import Prepared, make_model
    from trainer.optimizers import make_optimizer

    tf_keras.utils.set_random_seed(0)
    if mixed_precision != "none":
        tf_keras.mixed_precision.set_global_policy(f"mixed_{mixed_precision}")
    cfg = Config()
    wanted = {"epsilon": 1.0, "steps": args.pgd_steps, "step_size": 0.5}  # where the method has the setting
    own = [k for k in wanted if method != "none" and METHODS[method].has_setting(k)]
    cfg.regularizer = [regularizer(method, **{k: wanted[k] for k in own})]
    rng = np.random.default_rng(0)
    if BACKBONES[backbone].checkpoint:  # a BERT-shaped encoder of the benchmark's sizes
        from transformers import BertConfig, TFBertModel

        encoder = TFBertModel(BertConfig(vocab_size=args.vocab, hidden_size=args.bert_hidden,
                                         num_hidden_layers=args.bert_layers, num_attention_heads=12,
                                         intermediate_size=4 * args.bert_hidden))
        encoder.build_in_name_scope()
        cfg.model = ModelConfig(name=backbone, pooling="cls", normalize_embeddings=False)
        model = make_model(cfg, 2, Prepared(None, None, None, hf_model=encoder))
        batch, length = args.bert_batch, args.length
        ids = rng.integers(5, args.vocab, size=(batch, length)).astype(np.int32)
        inputs = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    else:
        # The same model for every method, so embedding normalization is on for the clean step too.
        cfg.model = ModelConfig(name=backbone, embedding_dim=args.embedding_dim, hidden_size=args.hidden,
                                pooling="max", normalize_embeddings=True)
        vocab = Vocabulary([f"t{i}" for i in range(args.vocab)], [1] * args.vocab)
        model = make_model(cfg, 2, Prepared(None, vocab, None))
        batch, length = args.batch, args.length
        inputs = {"token_ids": rng.integers(2, args.vocab, size=(batch, length)).astype(np.int32)}
    tf_keras.mixed_precision.set_global_policy("float32")
    model.compile(optimizer=make_optimizer(TrainConfig()), jit_compile=jit_compile,
                  steps_per_execution=steps_per_execution)
    labels = np.arange(batch, dtype=np.int32) % 2
    data = tf.data.Dataset.from_tensors(({k: tf.constant(v) for k, v in inputs.items()}, tf.constant(labels)))
    return model, data.repeat(), batch


def cpu_model() -> str:
    """The CPU's model name and its bfloat16 instructions (AMX / AVX-512-BF16 make bfloat16 pay on a CPU)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            info = f.read()
    except OSError:
        return "unknown CPU"
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "CPU")
    flags = [flag for flag in ("amx_bf16", "avx512_bf16") if f" {flag}" in info]
    return f"{name}; {', '.join(flags) or 'no bfloat16 instructions'}"


def device() -> str:
    import tensorflow as tf

    return "GPU:0" if tf.config.list_physical_devices("GPU") else "CPU:0"


def time_steps(model, data, warmup: int, steps: int, per_call: int = 1) -> tuple[list[float], float]:
    """Seconds per train step (a call runs `per_call` steps) and the peak memory of the timed steps, MiB."""
    timer = StepTimer(model, data, per_call)
    timer.warm(warmup)
    return timer.time(steps), timer.peak


class StepTimer:
    """A model's compiled train step on its repeated batch, timed in chunks (so that several models' steps can
    be interleaved: each ratio is then measured in every round under the same load)."""

    def __init__(self, model, data, per_call: int = 1):
        self.step, self.iterator, self.per_call, self.peak = model.make_train_function(), iter(data), per_call, 0.0

    def warm(self, steps: int) -> None:
        for _ in range(steps):
            float(self.step(self.iterator)["loss"])

    def time(self, steps: int) -> list[float]:
        import tensorflow as tf

        tf.config.experimental.reset_memory_stats(device())
        times = []
        for _ in range(steps):
            start = time.perf_counter()
            float(self.step(self.iterator)["loss"])  # wait for the step to finish
            times.append((time.perf_counter() - start) / self.per_call)
        self.peak = max(self.peak, tf.config.experimental.get_memory_info(device())["peak"] / 2**20)
        return times


def interleaved(timers: dict, warmup: int, rounds: int, steps: int) -> dict:
    """{name: [the median step of each round]}: every timer warmed up (once all are built), then every round
    times each timer's `steps` steps in turn, so that a slower stretch of a shared machine falls on all of them."""
    for timer in timers.values():
        timer.warm(warmup)
    medians = {name: [] for name in timers}
    for _ in range(rounds):
        for name, timer in timers.items():
            medians[name].append(statistics.median(timer.time(steps)))
    return medians


def precisions(args) -> list[str]:
    """float32 ('none', the policy's name for it) and, with --mixed-precision, that precision."""
    return ["none"] + ([args.mixed_precision] if args.mixed_precision != "none" else [])


def precision_name(precision: str) -> str:
    return "float32" if precision == "none" else precision


def spread(values: list[float]) -> str:
    return f"{min(values):.2f}-{max(values):.2f}" if len(values) > 1 else "-"


def bench_methods(args) -> list[dict]:
    """Each method's step in float32 and, with --mixed-precision, in that precision too: the ratio to the
    clean step of the same precision, and (mixed precision) to the same method's float32 step. The steps of
    one backbone are interleaved (--rounds rounds of --steps steps each); a ratio is the median of the rounds'
    ratios, printed with their range."""
    results = []
    for backbone in args.backbones:
        timers, models = {}, {}
        for precision in precisions(args):
            for method in args.methods:
                model, data, batch = build(backbone, method, args, mixed_precision=precision)
                timers[precision, method] = StepTimer(model, data)
                models[precision, method] = model
        medians = interleaved(timers, args.warmup, args.rounds, args.steps)
        for (precision, method), rounds in medians.items():
            median = statistics.median(rounds)
            base_rounds = medians.get((precision, "none"))
            updates = models[precision, method].updates_per_step  # per epoch-equivalent: the step over its updates
            ratios = [m / updates / b for m, b in zip(rounds, base_rounds)] if base_rounds else []
            fp32_rounds = medians.get(("none", method)) if precision != "none" else None
            to_fp32 = [m / f for m, f in zip(rounds, fp32_rounds)] if fp32_rounds else []
            target = args.pgd_steps + 1.1 if method == "pgd" else TARGETS.get(method)
            r = {"backbone": backbone, "method": method, "precision": precision_name(precision),
                 "median_step_s": median, "round_medians_s": rounds, "examples_per_s": batch / median,
                 "updates_per_step": updates, "ratio": statistics.median(ratios) if ratios else None,
                 "ratio_range": [min(ratios), max(ratios)] if ratios else None, "target": target,
                 "peak_mib": timers[precision, method].peak,
                 "ratio_to_float32": statistics.median(to_fp32) if to_fp32 else None}
            results.append(r)
            ratio = f"{r['ratio']:.2f}x ({spread(ratios)})" if r["ratio"] else "-"
            ratio += f" per update ({updates} a step)" if updates > 1 else ""
            vs = f"  {r['ratio_to_float32']:.2f}x its float32 step" if r["ratio_to_float32"] else ""
            print(f"{backbone:>7} {r['precision']:>8} {method:>7}: {median * 1000:8.1f} ms/step "
                  f"(rounds {spread([1000 * m for m in rounds])})  {r['examples_per_s']:7.1f} ex/s  {ratio} "
                  f"(target <= {target}x)  peak {r['peak_mib']:7.1f} MiB{vs}", flush=True)
    return results


def bench_language_model(args) -> list[dict]:
    """The language model's training step (configs/lm_imdb.yaml's model at --lm-* sizes: a forward and a backward
    LSTM sharing the embedding, the sampled softmax): ms per step and predicted tokens per second (both
    directions), in float32 and, with --mixed-precision, in that precision, interleaved like the methods."""
    import numpy as np
    import tensorflow as tf
    import tf_keras

    from core.schema import ModelConfig, TrainConfig
    from dataset.tokenizer import Vocabulary
    from model.lstm_lm import LSTMLanguageModel
    from trainer.lm_trainer import LanguageModelTrainer
    from trainer.optimizers import make_optimizer

    ids = np.random.default_rng(0).integers(2, args.lm_vocab, size=(args.batch, args.lm_length)).astype(np.int32)
    tokens = 2 * args.batch * (args.lm_length - 1)  # predicted tokens a step, both directions
    counts = Vocabulary([f"t{i}" for i in range(args.lm_vocab)], [1] * args.lm_vocab).counts
    timers = {}
    for precision in precisions(args):
        tf_keras.utils.set_random_seed(0)
        if precision != "none":
            tf_keras.mixed_precision.set_global_policy(f"mixed_{precision}")
        cfg = ModelConfig(name="bilstm", embedding_dim=args.lm_embedding_dim, hidden_size=args.lm_hidden,
                          dropout=0.0, normalize_embeddings=False)
        model = LanguageModelTrainer(LSTMLanguageModel(cfg, args.lm_vocab, counts=counts), args.lm_samples, seed=0)
        tf_keras.mixed_precision.set_global_policy("float32")
        model(tf.constant(ids))
        model.compile(optimizer=make_optimizer(TrainConfig()))
        timers[precision] = StepTimer(model, tf.data.Dataset.from_tensors(tf.constant(ids)).repeat())
    rows = []
    for precision, rounds in interleaved(timers, args.warmup, args.rounds, args.steps).items():
        median = statistics.median(rounds)
        name = precision_name(precision)
        rows.append({"precision": name, "median_step_s": median, "round_medians_s": rounds,
                     "tokens_per_s": tokens / median, "peak_mib": timers[precision].peak})
        print(f"language model {name:>8}: {median * 1000:8.1f} ms/step (rounds {spread([1000 * m for m in rounds])})  "
              f"{tokens / median:8.0f} tokens/s  (vocabulary {args.lm_vocab}, embedding {args.lm_embedding_dim}, "
              f"hidden {args.lm_hidden}, {args.batch} x {args.lm_length} tokens, {args.lm_samples} sampled classes)",
              flush=True)
    return rows


def bench_options(args) -> list[dict]:
    """fgm on bert (else the first backbone): each option's step time as a ratio to the plain fgm step.
    XLA only for bert: it recompiles the tf-keras LSTM at every step (config.py refuses that combination)."""
    import tensorflow as tf

    from core.registry import BACKBONES

    encoders = [b for b in args.backbones if BACKBONES[b].xla]
    backbone, k = (encoders or args.backbones)[0], 4
    variants = [("fgm", {}, 1), (f"fgm + steps_per_execution={k}", {"steps_per_execution": k}, k)]
    if BACKBONES[backbone].xla:
        variants.insert(1, ("fgm + jit_compile", {"jit_compile": True}, 1))
    if tf.config.list_physical_devices("GPU"):
        variants.append(("fgm + mixed_precision float16", {"mixed_precision": "float16"}, 1))
    else:
        print("mixed_precision: skipped (no GPU; float16 on a CPU is emulated and slower)")
    rows, base = [], None
    for name, options, per_call in variants:
        model, data, batch = build(backbone, "fgm", args, **options)
        times, peak = time_steps(model, data, args.warmup, args.steps, per_call)
        median = statistics.median(times)
        base = base or median
        rows.append({"backbone": backbone, "variant": name, "median_step_s": median, "ratio": median / base,
                     "peak_mib": peak})
        print(f"{backbone:>7} {name:>30}: {median * 1000:8.1f} ms/step  {median / base:.2f}x  peak {peak:7.1f} MiB",
              flush=True)
    return rows


def padding_share(lengths, batches, max_length=None) -> float:
    real = padded = 0
    for b in batches:
        longest = max_length or max(lengths[b])
        real += sum(lengths[b])
        padded += len(b) * longest
    return 1.0 - real / padded


def bench_data(args) -> tuple[list[dict], object]:
    """The data path on IMDB reviews: pipeline alone and Bi-LSTM fgm training, for three padding modes."""
    import itertools

    import numpy as np
    import tensorflow as tf

    from core.loader import regularizer
    from core.schema import ModelConfig, TrainConfig
    from dataset.pipeline import bucketed_epoch_batches, epoch_batches, fixed_length, token_lengths, training_dataset
    from dataset.readers import read_rows
    from dataset.tokenizer import TextEncoder, TextTokenizer, Vocabulary
    from model.lstm_classifier import LSTMClassifier
    from trainer.adversarial_model import AdversarialModel
    from trainer.optimizers import make_optimizer

    rows = read_rows(os.path.join(args.data, "train.jsonl.gz"), None, "text", "label")
    pick = np.random.default_rng(0).permutation(len(rows.texts))[:args.data_examples]
    texts, labels = [rows.texts[i] for i in pick], np.array([rows.labels[i] == "pos" for i in pick], np.int32)
    tokenizer = TextTokenizer("word", strip_html=True)
    vocab = Vocabulary.build(texts, tokenizer, min_freq=2, max_size=args.vocab)
    encoder = TextEncoder(tokenizer, vocab.tokens, args.data_max_length)
    lengths = token_lengths(texts, encoder)
    print(f"data: {len(texts)} IMDB reviews, {len(vocab)} words, max_length {args.data_max_length}; "
          f"mean length {lengths.mean():.0f} tokens, {100 * np.mean(lengths >= args.data_max_length):.0f}% truncated")
    B, n_batches = args.batch, -(-len(texts) // args.batch)
    modes = {
        "per-batch padding": (encoder, None, epoch_batches(len(texts), B, 0)),
        "length bucketing": (encoder, lengths, bucketed_epoch_batches(lengths, B, 0, 100)),
        "pad to max_length": (fixed_length(encoder, args.data_max_length), None, epoch_batches(len(texts), B, 0)),
    }
    # One model for the three modes: only the batches differ.
    cfg = ModelConfig(name="bilstm", embedding_dim=args.embedding_dim, hidden_size=args.hidden, pooling="max",
                      normalize_embeddings=True)
    model = AdversarialModel(LSTMClassifier(cfg, len(vocab), 2, counts=vocab.counts), [regularizer("fgm", epsilon=5.0)])
    model(model.classifier.example_inputs())
    model.compile(optimizer=make_optimizer(TrainConfig()))
    results = []
    for name, (enc, bucket_lengths, order) in modes.items():
        index_batches = [b.numpy() for b in itertools.islice(iter(order), n_batches)]
        share = padding_share(lengths, index_batches, args.data_max_length if "max_length" in name else None)
        ds = training_dataset(texts, labels, enc, B, 0, lengths=bucket_lengths)
        start, seen = time.perf_counter(), 0
        for x, _ in itertools.islice(iter(ds), n_batches):
            seen += int(tf.shape(x["token_ids"])[0])
        pipeline = seen / (time.perf_counter() - start)
        step, iterator = model.make_train_function(), iter(ds)
        for _ in range(args.warmup):
            step(iterator)
        start = time.perf_counter()
        for _ in range(args.data_steps):
            float(step(iterator)["loss"])
        train = args.data_steps * B / (time.perf_counter() - start)
        results.append({"mode": name, "padding_share": share, "pipeline_examples_per_s": pipeline,
                        "train_examples_per_s": train})
        print(f"{name:>18}: padding {100 * share:5.1f}%  pipeline {pipeline:8.0f} ex/s  "
              f"training (Bi-LSTM fgm) {train:6.1f} ex/s", flush=True)
    return results, (model, encoder, texts)


def bench_inference(model, encoder, texts, args) -> list[dict]:
    """Sentences per second of the SavedModel on raw strings (the model's weights do not matter)."""
    import tempfile

    import tensorflow as tf

    from core.schema import Config
    from trainer.export import ServingModule
    from trainer.restore import Run

    results = []
    with tempfile.TemporaryDirectory() as out:
        module = ServingModule(Run(Config(), ["neg", "pos"], encoder, model))
        tf.saved_model.save(module, out, signatures={"serving_default": module.serve})
        serve = tf.saved_model.load(out).signatures["serving_default"]
        for batch, calls in ((1, args.inference_calls), (64, max(3, args.inference_calls // 16))):
            chunks = [tf.constant([texts[(i * batch + j) % len(texts)] for j in range(batch)]) for i in range(calls)]
            serve(texts=chunks[0])  # warm-up
            start = time.perf_counter()
            for chunk in chunks:
                serve(texts=chunk)["probabilities"].numpy()
            rate = batch * calls / (time.perf_counter() - start)
            results.append({"batch": batch, "sentences_per_s": rate})
            print(f"SavedModel on raw strings, batch {batch:>2}: {rate:8.1f} sentences/s", flush=True)
    return results


def main(argv=None) -> int:
    load_tensorflow()
    parser = cli.parser(__doc__)
    parser.add_argument("--backbones", nargs="+", default=["bilstm", "bert"], help="backbones of core.registry.BACKBONES")
    parser.add_argument("--methods", nargs="+", help="default: none and every method of core.registry.METHODS")
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
    parser.add_argument("--steps", type=int, default=4, help="timed steps of each model a round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of interleaved timing")
    parser.add_argument("--language-model", action="store_true", help="time the language model's step too")
    parser.add_argument("--lm-vocab", type=int, default=30000)
    parser.add_argument("--lm-embedding-dim", type=int, default=128)
    parser.add_argument("--lm-hidden", type=int, default=128)
    parser.add_argument("--lm-length", type=int, default=100)
    parser.add_argument("--lm-samples", type=int, default=1024)
    parser.add_argument("--no-options", action="store_true", help="skip the options section")
    parser.add_argument("--mixed-precision", choices=["none", "float16", "bfloat16"], default="none",
                        help="also time every method in this precision, with its ratio to the float32 step")
    parser.add_argument("--data", help="IMDB-style directory (train.jsonl.gz) for the data-path and inference sections")
    parser.add_argument("--data-examples", type=int, default=3000)
    parser.add_argument("--data-max-length", type=int, default=400)
    parser.add_argument("--data-steps", type=int, default=8)
    parser.add_argument("--inference-calls", type=int, default=64)
    parser.add_argument("--output", help="write the results as JSON")
    args = parser.parse_args(argv)
    from core.registry import BACKBONES, METHODS

    unknown = [b for b in args.backbones if b not in BACKBONES]
    if unknown:
        parser.error(f"--backbones {unknown[0]}: not one of {', '.join(BACKBONES)}")

    args.methods = args.methods or ["none", *METHODS]
    unknown = [m for m in args.methods if m != "none" and m not in METHODS]
    if unknown:
        parser.error(f"--methods {unknown[0]}: not one of none, {', '.join(METHODS)}")
    if args.data and not os.path.exists(os.path.join(args.data, "train.jsonl.gz")):  # before the long part
        parser.error(f"--data {args.data}: no train.jsonl.gz there (an IMDB-style directory)")

    out = {"device": device(), "args": vars(args), "methods": bench_methods(args)}
    if args.language_model:
        out["language_model"] = bench_language_model(args)
    if not args.no_options:
        out["options"] = bench_options(args)
    if args.data:
        out["data"], (model, encoder, texts) = bench_data(args)
        out["inference"] = bench_inference(model, encoder, texts, args)

    print(f"\ndevice: {out['device']} ({cpu_model()})\n\n| backbone | precision | method | ms/step | examples/s | "
          "ratio to none (per epoch-equivalent) | target | ratio to float32 | peak MiB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in out["methods"]:
        ratio = f"{r['ratio']:.2f}" if r["ratio"] else "-"
        vs = f"{r['ratio_to_float32']:.2f}" if r["ratio_to_float32"] else "-"
        print(f"| {r['backbone']} | {r['precision']} | {r['method']} | {r['median_step_s'] * 1000:.1f} | "
              f"{r['examples_per_s']:.1f} | {ratio} | {r['target']} | {vs} | {r['peak_mib']:.0f} |")
    if "language_model" in out:
        print("\n| language model | ms/step | tokens/s (both directions) |\n|---|---|---|")
        for r in out["language_model"]:
            print(f"| {r['precision']} | {r['median_step_s'] * 1000:.1f} | {r['tokens_per_s']:.0f} |")
    if "options" in out:
        print("\n| backbone | variant | ms/step | ratio to fgm |\n|---|---|---|---|")
        for r in out["options"]:
            print(f"| {r['backbone']} | {r['variant']} | {r['median_step_s'] * 1000:.1f} | {r['ratio']:.2f} |")
    if "data" in out:
        print("\n| padding | padding tokens | pipeline examples/s | training examples/s (Bi-LSTM fgm) |\n|---|---|---|---|")
        for r in out["data"]:
            print(f"| {r['mode']} | {100 * r['padding_share']:.1f}% | {r['pipeline_examples_per_s']:.0f} | "
                  f"{r['train_examples_per_s']:.1f} |")
        print("\n| SavedModel, raw strings | sentences/s |\n|---|---|")
        for r in out["inference"]:
            print(f"| batch {r['batch']} | {r['sentences_per_s']:.1f} |")
    if args.output:
        write_json_atomically(args.output, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
