"""Train a text classifier with adversarial or virtual adversarial regularization.

    python train.py --config configs/bilstm_fgm.yaml [--set train.epochs=3 ...] [--run-dir DIR]
    python train.py --resume RUN_DIR      (continue a stopped run where it left off)
"""
from __future__ import annotations

import glob
import logging
import os
import sys

import trainer  # noqa: F401  (selects tf-keras before TensorFlow loads)
from core import cli
from core.errors import UserError, run_cli
from core.startup import VERBOSE_ENV, load_tensorflow


def parse_args(argv=None):
    parser = cli.parser(__doc__)
    parser.add_argument("--config", help="YAML config file")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override one config value (parsed as YAML); repeatable")
    parser.add_argument("--run-dir", help="where to write the run (default runs/<config name>/<time>)")
    parser.add_argument("--verbose", action="store_true",
                        help="show TensorFlow's start-up lines too (also: ADVTEXT_VERBOSE=1)")
    parser.add_argument("--resume", metavar="RUN_DIR",
                        help="continue the stopped run in RUN_DIR with its own config.yaml (no --config or --set)")
    args = parser.parse_args(argv)
    if (args.config is None) == (args.resume is None):
        parser.error("give either --config or --resume")
    if args.resume and (args.set or args.run_dir):
        parser.error("--resume continues a run with its own config.yaml; --set and --run-dir do not apply")
    return args


def run(args) -> None:
    if args.verbose:
        os.environ[VERBOSE_ENV] = "1"
    from core.loader import load_config  # without TensorFlow: a mistake in the config is reported at once

    if args.resume:
        if not os.path.isfile(os.path.join(args.resume, "config.yaml")):
            what = "does not exist" if not os.path.exists(args.resume) else "is not a run directory (no config.yaml)"
            raise UserError(f"--resume {args.resume}: {what}")
        cfg = load_config(os.path.join(args.resume, "config.yaml"))
    else:
        cfg = load_config(args.config, args.set)
    load_tensorflow()
    from trainer.run_dir import default_run_dir, find_resumable, runs_root
    from trainer.tasks import train

    if args.resume:
        train(cfg, args.resume, resume=True)
        return
    if cfg.train.resume == "auto":
        candidates = [args.run_dir] if args.run_dir else sorted(glob.glob(os.path.join(runs_root(args.config), "*")),
                                                                reverse=True)
        found = find_resumable(cfg, candidates)
        if found:
            train(cfg, found, resume=True)
            return
    train(cfg, args.run_dir or default_run_dir(args.config))


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for noisy in ("tensorflow", "absl"):  # not TensorFlow's own progress notes
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return run_cli(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
