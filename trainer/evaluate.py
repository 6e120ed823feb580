"""Evaluate a model on one split: metrics, calibration, robustness curves, plots, report files."""
from __future__ import annotations

import os
import weakref

import numpy as np
import tensorflow as tf

from core.paths import write_json_atomically, write_text_atomically, written_atomically
from core.schema import Config
from dataset.progress import Progress
from trainer import plots
from trainer.metrics import evaluation_metrics, format_report
from trainer.robustness import robustness_curves
from trainer.text_attacks import model_predictor, run_text_attacks


def attack_grid(cfg: Config) -> dict[str, list[float]]:
    return {a: cfg.eval.fgsm_epsilons if a == "fgsm" else cfg.eval.epsilons for a in cfg.eval.attacks}


_FORWARD = weakref.WeakKeyDictionary()  # model -> its traced inference pass, shared by every split


def predict_logits(model, dataset, what: str = "predictions", total: int | None = None) -> np.ndarray:
    """The clean model's logits for every batch of (features, labels), in order, with progress lines under `what`
    on a long pass (`total` examples). Calls the model directly, so that under a distribution strategy one process
    can evaluate on its own. One traced function per model serves every split (tracing an LSTM costs about as
    much as predicting a thousand texts)."""
    if model not in _FORWARD:
        _FORWARD[model] = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    forward = _FORWARD[model]
    progress, logits, done = Progress(what, total), [], 0
    for x, _ in dataset:
        logits.append(forward(x).numpy())
        done += len(logits[-1])
        progress.update(done)
    progress.finish()
    return np.concatenate(logits)


def evaluate_split(model, dataset, labels, label_names, cfg: Config, run_dir: str, split: str,
                   robustness: bool = True, texts=None, encoder=None) -> dict:
    """Writes eval_<split>.json, eval_<split>.txt and <split>_<plot>.png into `run_dir`, and the plots as
    TensorBoard images under tensorboard/eval; returns the report. With `robustness`: the embedding-space
    curves and, given the split's raw `texts` and the run's text `encoder`, the text attacks."""
    probs = tf.nn.softmax(predict_logits(model, dataset, f"final evaluation, {split}", len(labels))).numpy()
    report = evaluation_metrics(probs, np.asarray(labels), label_names, cfg.eval.ece_bins)
    if robustness and cfg.eval.attacks:
        report["robustness"] = robustness_curves(model.classifier, dataset, attack_grid(cfg), cfg.eval.pgd_steps,
                                                 cfg.eval.robustness_examples, total=len(labels))
    if robustness and cfg.eval.text_attacks and texts is not None:
        e = cfg.eval
        report["text_attacks"] = run_text_attacks(model_predictor(model, encoder), texts, labels, e.text_attacks,
                                                  e.text_noise_rates, e.text_attack_budgets, e.text_attack_examples)
    # Each file whole or not at all (a full disk leaves none half-written); eval_<split>.json, the record, last.
    write_text_atomically(os.path.join(run_dir, f"eval_{split}.txt"), format_report(report, split) + "\n", "evaluation")
    writer = tf.summary.create_file_writer(os.path.join(run_dir, "tensorboard", "eval"))
    with writer.as_default():
        for name, fig in plots.figures(report, split).items():
            png = plots.png_bytes(fig)
            with written_atomically(os.path.join(run_dir, f"{split}_{name}.png"), "plot") as path:
                with open(path, "wb") as f:
                    f.write(png)
            tf.summary.image(f"{split}/{name}", tf.image.decode_png(png)[None], step=0)
    writer.close()
    write_json_atomically(os.path.join(run_dir, f"eval_{split}.json"), report, "evaluation")
    return report
