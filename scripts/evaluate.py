"""Evaluate a trained run: accuracy, F1, calibration (NLL, Brier, ECE, MCE), ROC AUC and a threshold
table (binary), robustness curves under FGSM/FGM/PGD, plots.

    python -m scripts.evaluate --run-dir runs/bilstm_fgm/20261125-120000 [--split test|dev] [--data FILE]

Writes eval_<name>.json, eval_<name>.txt and <name>_*.png into the run directory, and the plots to
TensorBoard. name: the split, or data-<file name> for --data; where eval_<name>.json exists already (the
run's own evaluation, or an earlier one), the time is appended: nothing recorded is replaced.
"""
from __future__ import annotations

import datetime
import os
import sys

import trainer  # noqa: F401  (selects tf-keras before TensorFlow loads)
from core import cli
from core.errors import UserError
from core.startup import load_tensorflow


def evaluate(args) -> None:
    load_tensorflow()

    from dataset.data import label_ids, load_data
    from dataset.pipeline import labelled_dataset
    from dataset.readers import read_rows
    from trainer.evaluate import evaluate_split
    from trainer.metrics import format_report
    from trainer.restore import load_run

    run = load_run(args.run_dir, args.checkpoint)
    if not os.access(args.run_dir, os.W_OK):  # its reports are written into the run directory: say so first
        raise UserError(f"{args.run_dir}: cannot write into the run directory (read-only); evaluate.py writes its "
                        "report there: copy the run somewhere writable first")
    d = run.cfg.data
    if args.data:
        rows = read_rows(args.data, None, d.text_column, d.label_column, d.text_b_column)
        texts, texts_b = rows.texts, rows.texts_b
        labels = label_ids(rows, run.label_names, "is not one of the run's labels")
        name = "data-" + os.path.basename(args.data).split(".")[0]
    else:
        split = getattr(load_data(d), args.split)
        if split is None:
            raise UserError(f"{args.run_dir}: the run has no {args.split} split (data.split gives it a fraction of 0); "
                            "pass --data FILE")
        texts, texts_b, labels, name = split.texts, split.texts_b, split.labels, args.split
    if os.path.exists(os.path.join(args.run_dir, f"eval_{name}.json")):  # never replace a recorded evaluation
        name += "-" + datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    ds = labelled_dataset(texts, labels, run.text_encoder, d.batch_size, texts_b=texts_b)
    report = evaluate_split(run.model, ds, labels, run.label_names, run.cfg, args.run_dir, name,
                            robustness=not args.no_robustness, texts=texts if texts_b is None else None,
                            encoder=run.text_encoder)
    print(format_report(report, name))
    print(f"wrote {os.path.join(args.run_dir, f'eval_{name}.json')} and its plots")


def main(argv=None) -> int:
    parser = cli.parser(__doc__)
    cli.add_run_dir(parser)
    parser.add_argument("--split", choices=["test", "dev"], default="test")
    parser.add_argument("--data", help="a labelled file to evaluate on instead of a split of the run's data")
    parser.add_argument("--no-robustness", action="store_true", help="skip the attacks (embedding curves and text attacks)")
    return cli.main(parser, evaluate, argv)


if __name__ == "__main__":
    sys.exit(main())
