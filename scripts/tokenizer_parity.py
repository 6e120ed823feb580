"""Share of texts whose in-graph WordPiece ids equal the Hugging Face tokenizer's, on a whole file.

    python -m scripts.tokenizer_parity --pretrained DIR --data ../shared/data/imdb/test.jsonl.gz
"""
from __future__ import annotations

import os
import sys

import trainer  # noqa: F401  (selects tf-keras before TensorFlow loads)
from core import cli
from core.rules import checkpoint_lowercases
from core.startup import load_tensorflow
from dataset.readers import read_rows
from dataset.wordpiece import WordPieceEncoder, read_vocab


def parity(pretrained: str, texts: list[str], batch_size: int = 512):
    """Returns (identical, total, examples of differences as (text, ours, theirs))."""
    import tensorflow as tf
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(pretrained)
    ours = WordPieceEncoder(read_vocab(os.path.join(pretrained, "vocab.txt")), checkpoint_lowercases(pretrained),
                            max_length=1_000_000)
    same, diffs = 0, []
    for start in range(0, len(texts), batch_size):
        batch = texts[start:start + batch_size]
        out = ours(tf.constant(batch))
        theirs = hf(batch, truncation=False, padding=False)["input_ids"]
        for text, ids, mask, want in zip(batch, out["input_ids"].numpy(), out["attention_mask"].numpy(), theirs):
            got = ids[mask == 1].tolist()
            if got == want:
                same += 1
            elif len(diffs) < 5:
                diffs.append((text, hf.convert_ids_to_tokens(got), hf.convert_ids_to_tokens(want)))
    return same, len(texts), diffs


def main(argv=None) -> int:
    parser = cli.parser(__doc__)
    parser.add_argument("--pretrained", required=True, help="checkpoint directory with vocab.txt")
    parser.add_argument("--data", required=True, nargs="+", help="TSV/CSV/JSONL files (optionally .gz)")
    parser.add_argument("--text-column", default="text")
    parser.add_argument("--limit", type=int, help="only the first N texts of each file")
    return cli.main(parser, report, argv)


def report(args) -> None:
    load_tensorflow()
    for path in args.data:
        texts = read_rows(path, None, args.text_column, None).texts[: args.limit]
        same, total, diffs = parity(args.pretrained, texts)
        print(f"{path}: {same}/{total} identical id sequences ({100.0 * same / total:.2f}%)")
        for text, got, want in diffs:
            print(f"  differs: {text[:80]!r}\n    ours:   {got[:20]}\n    theirs: {want[:20]}")


if __name__ == "__main__":
    sys.exit(main())
