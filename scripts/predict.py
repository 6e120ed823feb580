"""Predict labels and class probabilities for a file of texts with a trained run.

    python -m scripts.predict --run-dir runs/bilstm_fgm/20261125-120000 --input reviews.txt [--output out.jsonl]

Input: the training formats (TSV/CSV with a header, JSON lines; optionally .gz) or plain text, one text
per line (.txt). Output: JSON lines {"line", "label", "probabilities"}; a row that cannot be read gets
{"line", "error"} and is reported on stderr, and the other rows are still predicted.
"""
from __future__ import annotations

import json
import os
import sys

import trainer  # noqa: F401  (selects tf-keras before TensorFlow loads)
from core import cli
from core.errors import UserError, positive_int
from core.paths import check_new_file, written_atomically
from core.startup import load_tensorflow
from dataset.readers import iter_rows_tolerant


def predict(args) -> None:
    if os.path.isdir(args.input):
        raise UserError(f"--input {args.input}: is a folder; give a file (a text per line, or TSV/CSV/JSON lines)")
    check_new_file(args.output)
    load_tensorflow()
    import tensorflow as tf

    from trainer.restore import load_run

    run = load_run(args.run_dir)
    d = run.cfg.data
    text_b_column = args.text_b_column or d.text_b_column
    rows = list(iter_rows_tolerant(args.input, args.format, args.text_column or d.text_column, text_b_column))
    good = [r for r in rows if r[3] is None]
    results = {}
    for start in range(0, len(good), args.batch_size):
        batch = good[start:start + args.batch_size]
        texts = tf.constant([r[1] for r in batch])
        inputs = run.text_encoder(texts, tf.constant([r[2] for r in batch])) if text_b_column else run.text_encoder(texts)
        probs = tf.nn.softmax(run.model(inputs, training=False)).numpy()
        for (line, *_), p in zip(batch, probs):
            results[line] = {"line": line, "label": run.label_names[int(p.argmax())],
                             "probabilities": {n: round(float(v), 6) for n, v in zip(run.label_names, p)}}
    check_new_file(args.output)  # again: it may have appeared meanwhile
    for line, _, _, error in rows:
        if error:
            print(f"{args.input}: line {line}: {error}", file=sys.stderr)
    lines = [json.dumps(results.get(line) or {"line": line, "error": error}, ensure_ascii=False) + "\n"
             for line, _, _, error in rows]
    if args.output:
        with written_atomically(args.output) as path, open(path, "w", encoding="utf-8") as out:
            out.writelines(lines)
    else:
        sys.stdout.writelines(lines)
    print(f"predicted {len(good)} rows, {len(rows) - len(good)} could not be read", file=sys.stderr)


def main(argv=None) -> int:
    parser = cli.parser(__doc__)
    cli.add_run_dir(parser, checkpoint=False)
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", help="JSON lines file (default: standard output)")
    parser.add_argument("--format", choices=["tsv", "csv", "jsonl", "lines"], help="default: from the extension")
    parser.add_argument("--text-column", help="default: the run's data.text_column")
    parser.add_argument("--text-b-column", help="second text of sentence pairs; default: the run's")
    parser.add_argument("--batch-size", type=positive_int, default=64)
    return cli.main(parser, predict, argv)


if __name__ == "__main__":
    sys.exit(main())
