"""Peak resident memory of a short semi-supervised run and of a short language-model run as the unlabeled corpus
grows: the corpus streamed from disk (.txt, a text per line) against the same texts read whole (.tsv, the
in-memory path every corpus took before streaming).

    python -m scripts.benchmark_memory --data ../shared/data/imdb [--lines 100000 1000000 5000000]
                                       [--in-memory-lines 100000 1000000] [--work DIR] [--steps 5]

The corpora are IMDB's 50,000 unlabeled reviews repeated to each size (written once into --work and reused:
about 1.3 KB a line, so 5,000,000 lines take 6.5 GB of disk). Each run is `train.py` in a process of its own:
IMDB with 1,000 labels, Bi-LSTM 64/64, max_length 200, VAT reading the corpus, the vocabulary counted over the
labelled texts and the whole corpus in one streaming pass, `--steps` training steps, evaluation on 200 test
reviews; its peak resident set size is read from the operating system (getrusage of the finished child).
The language-model run (task: lm, LSTM 64/64, sampled softmax over 1,024 classes) reads the same corpus, its
vocabulary counted in the same kind of pass. The in-memory path is run only for --in-memory-lines (5,000,000
lines would need about 30 GB); a run that fails is reported with its last line, and the others go on.
"""
from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import tempfile
import time

from core import cli
from core.errors import UserError
from core.paths import written_atomically

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A child's peak resident memory, in a wrapper process of its own (getrusage of the children is a maximum over
# every child a process ever had).
PEAK = ("import resource, subprocess, sys\n"
        "done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)\n"
        "print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
        "sys.stderr.write(done.stderr[-3000:] if done.returncode else '')\n")


def reviews(data: str) -> list[str]:
    with gzip.open(os.path.join(data, "unsup.jsonl.gz"), "rt", encoding="utf-8") as f:
        return [" ".join(json.loads(line)["text"].split()) for line in f]  # one line each, no tabs


def corpus(work: str, texts: list[str], lines: int, fmt: str) -> str:
    """IMDB's unlabeled reviews repeated to `lines` lines: .txt (a text per line) or .tsv (a header, a column)."""
    path = os.path.join(work, f"corpus-{lines}.{fmt}")
    if not os.path.exists(path):
        with written_atomically(path, "corpus") as temporary, open(temporary, "w", encoding="utf-8") as f:
            if fmt == "tsv":
                f.write("text\n")
            for i in range(lines):
                f.write(texts[i % len(texts)] + "\n")
    return path


def config(data: str, unlabeled: str, steps: int) -> dict:
    return {
        "data": {"train": os.path.join(data, "train.jsonl.gz"), "test": os.path.join(data, "test.jsonl.gz"),
                 "unlabeled": unlabeled, "split": [0.9, 0.1, 0.0], "num_labeled": 1000, "tokenizer": "word",
                 "strip_html": True, "max_length": 200, "min_freq": 3, "batch_size": 32, "test_examples": 200},
        "model": {"name": "bilstm", "embedding_dim": 64, "hidden_size": 64},
        "regularizer": {"name": "vat"},
        "train": {"epochs": 1, "steps_per_epoch": steps},
        "eval": {"robustness_after_training": False, "text_attacks": []},
    }


def lm_config(unlabeled: str, steps: int) -> dict:
    return {
        "task": "lm",
        "data": {"unlabeled": unlabeled, "tokenizer": "word", "strip_html": True, "max_length": 100, "min_freq": 3,
                 "batch_size": 64, "max_vocab_size": 30000},
        "model": {"name": "lstm", "embedding_dim": 64, "hidden_size": 64},
        "lm": {"softmax_samples": 1024, "heldout_texts": 200},
        "train": {"epochs": 1, "steps_per_epoch": steps},
    }


def measure(work: str, name: str, cfg: dict) -> tuple[float, float, str]:
    """(peak resident MiB, seconds, '' or the last line of a failure) of one train.py run."""
    import yaml

    path = os.path.join(work, f"{name}.yaml")
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(cfg, f)
    run_dir = tempfile.mkdtemp(prefix=f"{name}-", dir=work)
    os.rmdir(run_dir)
    start = time.time()
    done = subprocess.run([sys.executable, "-c", PEAK, sys.executable, os.path.join(ROOT, "train.py"), "--config",
                           path, "--run-dir", run_dir], capture_output=True, text=True)
    rc, peak_kib = done.stdout.split()
    lines = [line for line in done.stderr.strip().splitlines() if "Error" in line or "error:" in line]
    failure = "" if rc == "0" else f"exit {rc}: {(lines or done.stderr.strip().splitlines() or ['?'])[-1].strip()[:160]}"
    return int(peak_kib) / 1024, time.time() - start, failure


def main(argv=None) -> int:
    p = cli.parser(__doc__)
    p.add_argument("--data", required=True, help="the IMDB folder (train, test and unsup .jsonl.gz)")
    p.add_argument("--lines", nargs="+", type=int, default=[100_000, 1_000_000, 5_000_000])
    p.add_argument("--in-memory-lines", nargs="*", type=int, default=[100_000, 1_000_000])
    p.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "advtext-benchmark-memory"),
                   help="where the corpora, configs and runs are written (the corpora are kept for another run)")
    p.add_argument("--steps", type=int, default=5)

    def run(args) -> None:
        if not os.path.exists(os.path.join(args.data, "unsup.jsonl.gz")):
            raise UserError(f"--data {args.data}: no unsup.jsonl.gz there (IMDB's folder)")
        os.makedirs(args.work, exist_ok=True)
        args.data = os.path.abspath(args.data)
        texts = reviews(args.data)
        rows = []
        for lines in args.lines:
            runs = [("vat, streamed", "txt", config), ("lm, streamed", "txt", lm_config)]
            if lines in args.in_memory_lines:
                runs.append(("vat, in memory", "tsv", config))
            for name, fmt, make in runs:
                path = corpus(args.work, texts, lines, fmt)
                cfg = make(args.data, path, args.steps) if make is config else make(path, args.steps)
                peak, seconds, failure = measure(args.work, f"{name.replace(', ', '-').replace(' ', '_')}-{lines}", cfg)
                rows.append((lines, name, peak, seconds, failure))
                print(f"{lines:>9,} lines  {name:<15} peak {peak:8.0f} MiB  {seconds:6.0f} s  {failure}", flush=True)
        base = {name: peak for lines, name, peak, _, failure in rows if lines == min(args.lines) and not failure}
        print("\n| corpus lines | run | peak resident MiB | ratio to the smallest corpus | seconds |\n|---|---|---|---|---|")
        for lines, name, peak, seconds, failure in rows:
            ratio = f"{peak / base[name]:.2f}" if name in base and not failure else "–"
            print(f"| {lines:,} | {name} | {peak:.0f}{' (failed: ' + failure + ')' if failure else ''} | {ratio} | "
                  f"{seconds:.0f} |")

    return cli.main(p, run, argv)


if __name__ == "__main__":
    sys.exit(main())
