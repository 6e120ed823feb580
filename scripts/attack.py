"""Attack a trained classifier with text noise on raw strings: random character edits at given rates, and a
greedy black-box attack in the style of DeepWordBug (Gao et al. 2018) that edits the most important tokens
one at a time. The texts go through the model's own tokenization, so any backbone works, from a run
directory or from an exported SavedModel.

    python -m scripts.attack --run-dir RUN [--split test | --data FILE] [--output results.json]
    python -m scripts.attack --saved-model DIR --data FILE [--output results.json]

Reports accuracy at each noise rate (rate 0: clean), and for the greedy attack the accuracy after at most
k edited tokens for each budget k, the success rate (flipped among the texts first classified right) and
the model queries per attacked text. Seeded: the same texts meet the same noise in every run.
"""
from __future__ import annotations

import json
import os
import sys

import trainer  # noqa: F401  (selects tf-keras before TensorFlow loads)
from core import cli
from core.errors import UserError, non_negative_int, positive_int
from core.paths import check_new_file, written_atomically
from core.schema import TEXT_ATTACKS
from core.startup import load_tensorflow


def attack(args) -> None:
    check_new_file(args.output)
    if bool(args.run_dir) == bool(args.saved_model):
        raise UserError("give one of --run-dir and --saved-model")
    if args.saved_model and not args.data:
        raise UserError("--saved-model needs --data (a labelled file): a SavedModel carries no data")
    if any(not 0 <= r <= 1 for r in args.rates):
        raise UserError(f"--rates: rates are between 0 and 1, got {args.rates}")
    load_tensorflow()
    import tensorflow as tf

    from dataset.data import label_ids, load_data
    from dataset.readers import read_rows
    from trainer import text_attacks
    from trainer.metrics import text_attack_lines

    if args.run_dir:
        from trainer.restore import load_run

        run = load_run(args.run_dir)
        d, names = run.cfg.data, run.label_names
        if d.text_b_column:
            raise UserError(f"{args.run_dir}: a sentence-pair run; the text attacks take single texts")
        predict = text_attacks.model_predictor(run.model, run.text_encoder)
        text_column, label_column = args.text_column or d.text_column, args.label_column or d.label_column
    else:
        if not os.path.exists(os.path.join(args.saved_model, "saved_model.pb")):
            raise UserError(f"--saved-model {args.saved_model}: no saved_model.pb there")
        try:
            loaded = tf.saved_model.load(args.saved_model)
        except Exception as e:  # protobuf's DecodeError, TensorFlow's errors, OSError: all of them damage
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            raise UserError(f"--saved-model {args.saved_model}: cannot be loaded ({first}); is it a folder "
                            "scripts/export.py wrote, whole?") from None
        if not hasattr(loaded, "label_names"):
            raise UserError(f"--saved-model {args.saved_model}: exported without its label names (before they "
                            "were saved); export the run again with scripts/export.py")
        names = [n.decode() for n in loaded.label_names.numpy()]
        serve = loaded.signatures["serving_default"]
        if "texts_b" in serve.structured_input_signature[1]:
            raise UserError(f"--saved-model {args.saved_model}: a sentence-pair model; the text attacks take single texts")
        predict = text_attacks.saved_model_predictor(serve)
        text_column, label_column = args.text_column or "text", args.label_column or "label"
    if args.data:
        rows = read_rows(args.data, args.format, text_column, label_column)
        texts, labels = rows.texts, label_ids(rows, names, "is not one of the model's labels")
        source = args.data
    else:
        split = getattr(load_data(d), args.split)
        texts, labels, source = split.texts, split.labels, f"the run's {args.split} split"
    results = text_attacks.run_text_attacks(predict, texts, labels, args.attacks, args.rates, args.budgets,
                                            args.examples, args.seed, args.batch_size)
    print(f"{source}: {len(texts)} texts, attacked on a stratified sample of "
          f"{min(len(texts), args.examples or len(texts))} (seed {args.seed})")
    print("\n".join(text_attack_lines(results)))
    check_new_file(args.output)  # again: it may have appeared meanwhile
    if args.output:
        with written_atomically(args.output) as path, open(path, "w", encoding="utf-8") as f:
            json.dump({"source": source, "model": args.run_dir or args.saved_model, **results}, f, indent=2)


def main(argv=None) -> int:
    parser = cli.parser(__doc__)
    cli.add_run_dir(parser, required=False, checkpoint=False)
    parser.add_argument("--saved-model", help="a SavedModel from scripts/export.py")
    parser.add_argument("--split", choices=["test", "dev"], default="test", help="with --run-dir: the run's split")
    parser.add_argument("--data", help="a labelled file (TSV/CSV/JSON lines) to attack instead")
    parser.add_argument("--format", choices=["tsv", "csv", "jsonl"], help="of --data; default: from the extension")
    parser.add_argument("--text-column", help="default: the run's, or 'text'")
    parser.add_argument("--label-column", help="default: the run's, or 'label'")
    parser.add_argument("--attacks", nargs="+", choices=TEXT_ATTACKS, default=list(TEXT_ATTACKS))
    parser.add_argument("--rates", nargs="+", type=float, default=[0.05, 0.1, 0.2], help="character-noise rates")
    parser.add_argument("--budgets", nargs="+", type=positive_int, default=[1, 2, 4],
                        help="edited tokens (at most) of the greedy attack")
    parser.add_argument("--examples", type=positive_int, default=200,
                        help="a fixed stratified sample of this many texts (default 200)")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="seeds the text sample and the noise")
    parser.add_argument("--batch-size", type=positive_int, default=256)
    parser.add_argument("--output", help="write the results as JSON (a new file)")
    return cli.main(parser, attack, argv)


if __name__ == "__main__":
    sys.exit(main())
