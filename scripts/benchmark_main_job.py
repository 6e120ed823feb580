"""Seconds per training epoch of a config, today's settings against each speed lever alone and all of them,
measured in one process, one after the other (ratios, not absolute times, carry over between machines).

    python -m scripts.benchmark_main_job [--config configs/bilstm_fgm.yaml] [--epochs 2] [--output FILE]
    python -m scripts.benchmark_main_job --full --seeds 1 2 3 --variants baseline defaults "defaults + bfloat16"

Variants (each a full training epoch of the config's data, with its dev evaluation):
    baseline            data.length_bucketing off, tf-keras's LSTM layer (which traces its cuDNN and generic
                        kernels and picks one when it runs), float32: the settings before the levers
    length bucketing    + data.length_bucketing on (batches of similar lengths: less padding)
    generic LSTM        + the generic LSTM kernel alone (RNN of LSTMCell, what the framework builds without a
                        GPU): the same computation, a cheaper trace (every new batch shape retraces)
    bfloat16            + train.mixed_precision: bfloat16
    batch 128           + data.batch_size: 128 (fewer, larger steps; the learning rate is left as it is)
    defaults            the config as it loads today (length_bucketing: auto, the LSTM chosen by device)
    defaults, generic LSTM
                        the defaults with tf-keras's generic LSTM kernel in place of model/fused_lstm.py (what
                        the CPU ran before it)
    defaults + bfloat16 + train.mixed_precision: bfloat16 (pays on CPUs with avx512_bf16 or AMX)
    defaults + batch 32 + data.batch_size: 32 (twice the updates per epoch)
    defaults + learning rate 0.0015
                        + train.learning_rate: 0.0015 (bucketed runs fit the training data more slowly)
    defaults + linear decay from 0.002
                        + train.lr_schedule: linear, train.learning_rate: 0.002 (the same mean rate as the
                        config's constant 0.001, falling to 0 by the last step)
Epoch 1 includes tracing the step; later epochs are the steady state.

--full trains each variant as train.py does, for every seed of --seeds (train.seed; the data split stays),
the variants of a seed one after the other, into --runs-dir: its full schedule (epochs, early stopping),
the best epoch's dev and test accuracy, and the training time. It prints each variant's mean over the
seeds and, paired by seed, its speed-up and test-accuracy difference to the first variant.
"""
from __future__ import annotations

import contextlib
import os
import statistics
import sys
import time

import trainer  # noqa: F401  (selects tf-keras before TensorFlow loads)
from core import cli
from core.errors import UserError
from core.paths import check_new_dir, check_new_file, write_json_atomically
from core.startup import load_tensorflow
from scripts.experiment_report import mean_std

VARIANTS = {
    "baseline": (["data.length_bucketing=off"], "keras"),
    "length bucketing": (["data.length_bucketing=on"], "keras"),
    "generic LSTM": (["data.length_bucketing=off"], "generic"),
    "bfloat16": (["data.length_bucketing=off", "train.mixed_precision=bfloat16"], "keras"),
    "batch 128": (["data.length_bucketing=off", "data.batch_size=128"], "keras"),
    "defaults": ([], None),
    "defaults, generic LSTM": ([], "generic"),
    "defaults + bfloat16": (["train.mixed_precision=bfloat16"], None),
    "defaults + batch 32": (["data.batch_size=32"], None),
    "defaults + learning rate 0.0015": (["train.learning_rate=0.0015"], None),
    "defaults + linear decay from 0.002": (["train.learning_rate=0.002", "train.lr_schedule=linear"], None),
}


@contextlib.contextmanager
def lstm_kernel(kernel: str | None):
    """Builds tf-keras's LSTM layer ('keras'), its generic kernel alone ('generic') or the framework's
    choice (None: FusedLSTM on a CPU)."""
    import tf_keras

    from model import lstm

    chosen = lstm.lstm_layer
    if kernel is not None:
        def keras(units, seq, bidirectional=False):
            layer = tf_keras.layers.LSTM(units, return_sequences=seq)
            return tf_keras.layers.Bidirectional(layer) if bidirectional else layer

        def generic(units, seq, bidirectional=False):
            layer = lstm.generic_lstm(units, seq)
            return tf_keras.layers.Bidirectional(layer) if bidirectional else layer

        lstm.lstm_layer = {"keras": keras, "generic": generic}[kernel]
    try:
        yield
    finally:
        lstm.lstm_layer = chosen


def time_epochs(config: str, overrides: list[str], kernel: str | None, epochs: int, prepared=None):
    """Seconds of each training epoch (with its dev evaluation) of `config` with `overrides`."""
    import tf_keras

    from core.loader import load_config
    from dataset.streams import evaluation_streams, training_stream
    from trainer.run import build_model, prepare, steps_per_epoch

    cfg = load_config(config, overrides + [f"train.epochs={epochs}", "train.early_stopping_patience=null"])
    prepared = prepared or prepare(cfg)
    train_ds = training_stream(cfg, prepared.data, prepared.text_encoder)
    dev_ds, _ = evaluation_streams(cfg, prepared.data, prepared.text_encoder)
    with lstm_kernel(kernel):
        tf_keras.utils.set_random_seed(cfg.train.seed)
        model = build_model(cfg, prepared, len(prepared.data.label_names))
    times = []

    class Timer(tf_keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.start)

    history = model.fit(train_ds, validation_data=dev_ds, epochs=epochs,
                        steps_per_epoch=steps_per_epoch(cfg, len(prepared.data.train.texts)),
                        callbacks=[Timer()], verbose=0)
    return times, history.history, prepared


def check_arguments(args) -> None:
    if args.full and args.epochs is not None:
        raise UserError("--epochs: --full trains each variant for the config's train.epochs; leave --epochs out")
    if not args.full and (args.seeds is not None or args.runs_dir is not None):
        raise UserError(f"{'--seeds' if args.seeds is not None else '--runs-dir'}: only with --full")
    if not os.path.exists(args.config):
        raise UserError(f"--config {args.config}: no such file")
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        raise UserError(f"--variants {unknown[0]!r}: expected some of {', '.join(VARIANTS)}")


def benchmark(args) -> int:
    import tensorflow as tf

    if args.output:
        check_new_file(args.output, "--output")
    check_arguments(args)
    args.epochs = 2 if args.epochs is None else args.epochs
    print(f"{args.config}, {args.epochs} epochs per variant, device "
          f"{'GPU' if tf.config.list_physical_devices('GPU') else 'CPU'}", flush=True)
    results, prepared = [], None
    for name in args.variants:
        overrides, kernel = VARIANTS[name]
        # the data and vocabulary are prepared once (the batch size does not enter them)
        times, history, prepared = time_epochs(args.config, overrides, kernel, args.epochs, prepared)
        results.append({"variant": name, "overrides": overrides, "epoch_seconds": times,
                        "val_accuracy": history.get("val_accuracy", [None])[-1]})
        print(f"{name:>17}: " + "  ".join(f"epoch {i + 1} {t:6.1f} s" for i, t in enumerate(times)), flush=True)
    base = next((r for r in results if r["variant"] == "baseline"), results[0])
    print(f"\n| variant | epoch 1 s (with tracing) | later epochs s | ratio to {base['variant']} (later epochs) "
          "| dev accuracy after the last epoch |\n|---|---|---|---|---|")
    for r in results:
        later = r["epoch_seconds"][1:] or r["epoch_seconds"]
        base_later = base["epoch_seconds"][1:] or base["epoch_seconds"]
        r["ratio"] = (sum(base_later) / len(base_later)) / (sum(later) / len(later))
        acc = f"{100 * r['val_accuracy']:.2f}%" if r["val_accuracy"] is not None else "-"
        print(f"| {r['variant']} | {r['epoch_seconds'][0]:.1f} | {sum(later) / len(later):.1f} | "
              f"{r['ratio']:.2f}x faster | {acc} |")
    if args.output:
        write_json_atomically(args.output, results)
    return 0


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name).strip("_")


def summary_table(rows: list[dict], variants: list[str]) -> str:
    """Markdown: each variant's means over its seeds and, paired by seed with the first variant, its
    speed-up (the first's training time over its own, averaged) and its test-accuracy difference."""
    first = variants[0]
    base = {r["seed"]: r for r in rows if r["variant"] == first}
    lines = [f"| variant | training s | speed-up over {first} | epochs | dev accuracy % | test accuracy % | "
             "test difference, points |", "|---|---|---|---|---|---|---|"]
    for name in variants:
        mine = [r for r in rows if r["variant"] == name]
        speed = [base[r["seed"]]["train_seconds"] / r["train_seconds"] for r in mine]
        diff = [100 * (r["test_accuracy"] - base[r["seed"]]["test_accuracy"]) for r in mine]
        lines.append(f"| {name} | {statistics.mean(r['train_seconds'] for r in mine):.0f} | "
                     f"{statistics.mean(speed):.2f}x | {statistics.mean(r['epochs_run'] for r in mine):g} | "
                     f"{mean_std([r['dev_accuracy'] for r in mine], percent=True)} | "
                     f"{mean_std([r['test_accuracy'] for r in mine], percent=True)} | "
                     f"{mean_std(diff) if name != first else '-'} |")
    return "\n".join(lines)


def full_runs(args) -> int:
    """Each variant trained as train.py trains it, for every seed; training time and accuracy."""
    from core.loader import load_config
    from trainer.tasks import train

    check_arguments(args)
    args.seeds = args.seeds or [42]
    args.runs_dir = args.runs_dir or os.path.join("runs", "benchmark_main_job")
    data = load_config(args.config).data
    if data.dataset is None and data.test is None:
        raise UserError(f"--config {args.config}: data.test is not set; --full compares test accuracy")
    plan = [(seed, name, os.path.join(args.runs_dir, f"seed{seed}", _slug(name)))
            for seed in args.seeds for name in args.variants]
    for _, _, run_dir in plan:  # all of them before the first run trains
        check_new_dir(run_dir, "--runs-dir", create_parents=True)
    if args.output:
        check_new_file(args.output, "--output")
    rows = []
    for seed, name, run_dir in plan:
        overrides, kernel = VARIANTS[name]
        cfg = load_config(args.config, overrides + [f"train.seed={seed}"])
        with lstm_kernel(kernel):
            metrics = train(cfg, run_dir)
        rows.append({"variant": name, "seed": seed, "overrides": overrides, "run_dir": run_dir,
                     "train_seconds": metrics["train_seconds"], "epochs_run": metrics["epochs_run"],
                     "best_epoch": metrics["best_epoch"], "dev_accuracy": metrics["dev"]["accuracy"],
                     "test_accuracy": metrics["test"]["accuracy"]})
        print(f"{name} (seed {seed}): {metrics['train_seconds']:.0f} s, dev {metrics['dev']['accuracy']:.4f}, "
              f"test {metrics['test']['accuracy']:.4f}", flush=True)
    print(f"\n{args.config}, seeds {' '.join(map(str, args.seeds))}\n")
    print(summary_table(rows, args.variants))
    if args.output:
        write_json_atomically(args.output, rows)
    return 0


def main(argv=None) -> int:
    load_tensorflow()
    parser = cli.parser(__doc__)
    parser.add_argument("--config", default="configs/bilstm_fgm.yaml")
    parser.add_argument("--epochs", type=int, help="epochs per variant (the first includes tracing; default 2); "
                        "not with --full")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), metavar="VARIANT",
                        help=f"some of: {', '.join(repr(v) for v in VARIANTS)}")
    parser.add_argument("--output", help="write the results as JSON (a new file)")
    parser.add_argument("--full", action="store_true",
                        help="train each variant fully, as train.py does, for every seed of --seeds")
    parser.add_argument("--seeds", nargs="+", type=int, help="--full: train.seed of each run (default 42)")
    parser.add_argument("--runs-dir", help="--full: where the runs go (<runs-dir>/seed<N>/<variant>; default "
                        "runs/benchmark_main_job)")
    return cli.main(parser, lambda args: full_runs(args) if args.full else benchmark(args), argv)


if __name__ == "__main__":
    sys.exit(main())
