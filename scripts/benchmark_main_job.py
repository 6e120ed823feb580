"""Seconds per training epoch of a config, today's settings against each speed lever alone and all of them,
measured in one process, one after the other (ratios, not absolute times, carry over between machines).

    python scripts/benchmark_main_job.py [--config configs/bilstm_fgm.yaml] [--epochs 2] [--output FILE]

Variants (each a full training epoch of the config's data, with its dev evaluation):
    baseline            data.length_bucketing off, tf-keras's LSTM layer (which traces its cuDNN and generic
                        kernels and picks one when it runs), float32: the settings before the levers
    length bucketing    + data.length_bucketing on (batches of similar lengths: less padding)
    generic LSTM        + the generic LSTM kernel alone (RNN of LSTMCell, what the framework builds without a
                        GPU): the same computation, a cheaper trace (every new batch shape retraces)
    bfloat16            + train.mixed_precision: bfloat16
    batch 128           + data.batch_size: 128 (fewer, larger steps; the learning rate is left as it is)
    defaults            the config as it loads today (length_bucketing: auto, the LSTM chosen by device)
Epoch 1 includes tracing the step; later epochs are the steady state.
"""
from __future__ import annotations

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import trainer  # noqa: E402,F401  (selects tf-keras before TensorFlow loads)
from core import cli  # noqa: E402
from core.errors import UserError  # noqa: E402
from core.paths import check_new_file  # noqa: E402
from core.startup import load_tensorflow  # noqa: E402

VARIANTS = {
    "baseline": (["data.length_bucketing=off"], True),
    "length bucketing": (["data.length_bucketing=on"], True),
    "generic LSTM": (["data.length_bucketing=off"], False),
    "bfloat16": (["data.length_bucketing=off", "train.mixed_precision=bfloat16"], True),
    "batch 128": (["data.length_bucketing=off", "data.batch_size=128"], True),
    "defaults": ([], None),
}


def time_epochs(config: str, overrides: list[str], keras_lstm: bool | None, epochs: int, prepared=None):
    """Seconds of each training epoch (with its dev evaluation) of `config` with `overrides`."""
    import tf_keras

    from core.config import load_config
    from model import lstm
    from trainer.run import build_model, datasets, prepare, steps_per_epoch

    cfg = load_config(config, overrides + [f"train.epochs={epochs}", "train.early_stopping_patience=null"])
    prepared = prepared or prepare(cfg)
    train_ds, dev_ds, _ = datasets(cfg, prepared)
    chosen = lstm.lstm_layer
    if keras_lstm is not None:
        lstm.lstm_layer = ((lambda units, seq: tf_keras.layers.LSTM(units, return_sequences=seq)) if keras_lstm
                           else lstm.generic_lstm)
    try:
        tf_keras.utils.set_random_seed(cfg.train.seed)
        model = build_model(cfg, prepared, len(prepared.data.label_names))
    finally:
        lstm.lstm_layer = chosen
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


def benchmark(args) -> int:
    import tensorflow as tf

    if args.output:
        check_new_file(args.output, "--output")
    if not os.path.exists(args.config):
        raise UserError(f"--config {args.config}: no such file")
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        raise UserError(f"--variants {unknown[0]!r}: expected some of {', '.join(VARIANTS)}")
    print(f"{args.config}, {args.epochs} epochs per variant, device "
          f"{'GPU' if tf.config.list_physical_devices('GPU') else 'CPU'}", flush=True)
    results, prepared = [], None
    for name in args.variants:
        overrides, keras_lstm = VARIANTS[name]
        # the data and vocabulary are prepared once (the batch size does not enter them)
        times, history, prepared = time_epochs(args.config, overrides, keras_lstm, args.epochs, prepared)
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
        with open(args.output, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)
    return 0


def main(argv=None) -> int:
    load_tensorflow()
    parser = cli.parser(__doc__)
    parser.add_argument("--config", default="configs/bilstm_fgm.yaml")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per variant (the first includes tracing)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), metavar="VARIANT",
                        help=f"some of: {', '.join(repr(v) for v in VARIANTS)}")
    parser.add_argument("--output", help="write the results as JSON (a new file)")
    return cli.main(parser, benchmark, argv)


if __name__ == "__main__":
    sys.exit(main())
