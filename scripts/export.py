"""Export a trained run as a TensorFlow SavedModel whose serving_default signature takes raw strings.

    python -m scripts.export --run-dir runs/bilstm_fgm/20261125-120000 --out exported/bilstm_fgm

Load it anywhere with TensorFlow and tensorflow-text (for the tokenizer ops), without this project:
    import tensorflow as tf, tensorflow_text
    m = tf.saved_model.load("exported/bilstm_fgm")
    m.signatures["serving_default"](texts=tf.constant(["很好"]))  # probabilities, labels, label_ids
"""
from __future__ import annotations

import sys

import trainer  # noqa: F401  (selects tf-keras before TensorFlow loads)
from core import cli
from core.paths import check_new_dir
from core.startup import load_tensorflow


def export(args) -> None:
    check_new_dir(args.out)
    load_tensorflow()
    from trainer.export import export_run
    from trainer.restore import load_run

    export_run(load_run(args.run_dir, args.checkpoint), args.out)
    print(f"exported {args.run_dir} to {args.out}")


def main(argv=None) -> int:
    parser = cli.parser(__doc__)
    cli.add_run_dir(parser)
    parser.add_argument("--out", required=True, help="an empty or new directory")
    return cli.main(parser, export, argv)


if __name__ == "__main__":
    sys.exit(main())
