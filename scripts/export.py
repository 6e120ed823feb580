"""Export a trained run as a TensorFlow SavedModel whose serving_default signature takes raw strings.

    python scripts/export.py --run-dir runs/bilstm_fgm/20261125-120000 --out exported/bilstm_fgm

Load it anywhere with TensorFlow and tensorflow-text (for the tokenizer ops), without this project:
    import tensorflow as tf, tensorflow_text
    m = tf.saved_model.load("exported/bilstm_fgm")
    m.signatures["serving_default"](texts=tf.constant(["很好"]))  # probabilities, labels, label_ids
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import trainer  # noqa: E402,F401  (selects tf-keras before TensorFlow loads)
from core import cli  # noqa: E402
from core.paths import check_new_dir  # noqa: E402
from core.startup import load_tensorflow  # noqa: E402


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
