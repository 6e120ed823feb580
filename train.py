"""Train a text classifier with adversarial or virtual adversarial regularization.

    python train.py --config configs/bilstm_fgm.yaml [--set train.epochs=3 ...] [--run-dir DIR]
"""
from __future__ import annotations

import argparse
import logging
import sys

import trainer  # noqa: F401  (selects tf-keras before TensorFlow loads)
from trainer.config import load_config
from trainer.errors import run_cli


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--config", required=True, help="YAML config file")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override one config value (parsed as YAML); repeatable")
    parser.add_argument("--run-dir", help="where to write the run (default runs/<config name>/<time>)")
    return parser.parse_args(argv)


def run(args) -> None:
    cfg = load_config(args.config, args.set)
    from trainer.run import default_run_dir, train  # imports TensorFlow: after the config is checked

    train(cfg, args.run_dir or default_run_dir(args.config))


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return run_cli(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
