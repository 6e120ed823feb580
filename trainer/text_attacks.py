"""Attacks on raw strings: random character noise, and a greedy black-box attack in the style of DeepWordBug
(Gao et al. 2018, arXiv 1801.04354).

They see a model only through `predict(texts) -> probabilities (N, C)`, so they run through the model's own
in-graph tokenization and work alike for every backbone, for a run's model and for an exported SavedModel.
Every random choice is seeded per example (by the seed and the example's index), so a result does not
depend on batching. Tokens, for the attacks: a run of letters or digits, or one CJK character (Chinese has
no spaces; a character is the unit the character models read).
"""
from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from dataset.data import stratified_sample
from dataset.progress import Progress

CJK_RANGES = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
TOKEN = re.compile(f"[{CJK_RANGES}]|[^\\W_{CJK_RANGES}]+")
CJK = re.compile(f"[{CJK_RANGES}]")
LETTERS = "abcdefghijklmnopqrstuvwxyz"
# Tokens of a text that the greedy attack ranks: the first ones (every model here reads a prefix of at most
# data.max_length tokens); a 100,000-character text costs what a text of this many tokens costs.
MAX_TOKENS = 256

Predict = Callable[[Sequence[str]], np.ndarray]


def example_rng(seed: int, index: int, stream: int) -> random.Random:
    """The random numbers of one example of one attack: independent of the other examples and of batching."""
    return random.Random(f"{seed}:{stream}:{index}")


def char_noise(text: str, rate: float, rng: random.Random) -> str:
    """Each character other than white space is edited with probability `rate`: a CJK character is deleted,
    duplicated or swapped with the next character; any other is deleted, swapped with the next, replaced by
    a random letter, or gets a random letter inserted before it. A swap without a next character (or with
    white space next) leaves the character as it was."""
    chars, out, i = list(text), [], 0
    while i < len(chars):
        c = chars[i]
        if c.isspace() or rng.random() >= rate:
            out.append(c)
            i += 1
            continue
        op = rng.choice(("delete", "duplicate", "swap") if CJK.match(c) else ("delete", "swap", "substitute", "insert"))
        if op == "swap" and i + 1 < len(chars) and not chars[i + 1].isspace():
            out += [chars[i + 1], c]
            i += 2
            continue
        if op == "duplicate":
            out += [c, c]
        elif op == "substitute":
            out.append(rng.choice([x for x in LETTERS if x != c.lower()]))
        elif op == "insert":
            out += [rng.choice(LETTERS), c]
        elif op == "swap":
            out.append(c)
        i += 1
    return "".join(out)


def token_spans(text: str, limit: int = MAX_TOKENS) -> list[tuple[int, int]]:
    """(start, end) of the attack's tokens in `text`, at most `limit` (the first)."""
    spans = []
    for m in TOKEN.finditer(text):
        if len(spans) == limit:
            break
        spans.append(m.span())
    return spans


def token_edits(token: str, rng: random.Random) -> list[str]:
    """DeepWordBug's character transformations of one token, one random instance of each: a CJK character
    deleted or doubled; a word with two neighbouring letters swapped, one letter replaced, one deleted, one
    inserted (a one-letter word: replaced, deleted, inserted)."""
    if CJK.match(token):
        return ["", token + token]
    edits = []
    if len(token) >= 2:
        i = rng.randrange(len(token) - 1)
        edits.append(token[:i] + token[i + 1] + token[i] + token[i + 2:])
    i = rng.randrange(len(token))
    edits.append(token[:i] + rng.choice([x for x in LETTERS if x != token[i].lower()]) + token[i + 1:])
    i = rng.randrange(len(token))
    edits.append(token[:i] + token[i + 1:])
    i = rng.randrange(len(token) + 1)
    edits.append(token[:i] + rng.choice(LETTERS) + token[i:])
    return [e for e in dict.fromkeys(edits) if e != token]


def batched(predict: Predict, texts: Sequence[str], batch_size: int) -> np.ndarray:
    """predict over `texts` in batches (sorted by length, so that each batch pads little), in order."""
    if not texts:
        return np.zeros((0, 0), np.float32)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    parts = [np.asarray(predict([texts[i] for i in order[s:s + batch_size]]))
             for s in range(0, len(order), batch_size)]
    probs = np.concatenate(parts)
    out = np.empty_like(probs)
    out[order] = probs
    return out


def noise_accuracy(predict: Predict, texts, labels, rates, seed: int = 0, batch_size: int = 256) -> dict:
    """Accuracy on `texts` with random character noise at each rate (rate 0: the clean texts)."""
    labels = np.asarray(labels)
    accuracy = []
    progress = Progress(f"text attack noise ({len(texts)} texts)", len(rates), "rates")
    for k, rate in enumerate(rates):
        noisy = [char_noise(t, rate, example_rng(seed, i, k)) if rate > 0 else t for i, t in enumerate(texts)]
        probs = batched(predict, noisy, batch_size)
        accuracy.append(float(np.mean(probs.argmax(-1) == labels)) if len(texts) else 0.0)
        progress.update(k + 1)
    progress.finish()
    return {"rates": [float(r) for r in rates], "accuracy": accuracy, "examples": len(texts), "seed": seed}


@dataclass
class _Target:
    index: int  # into texts
    pieces: list[str]  # the text cut at its tokens' boundaries; token j is pieces[2 * j + 1]
    order: list[int]  # token numbers, most important first
    edited: int = 0
    queries: int = 0
    flipped: bool = False

    def text(self, token: int | None = None, replacement: str = "") -> str:
        if token is None:
            return "".join(self.pieces)
        k = 2 * token + 1
        return "".join(self.pieces[:k]) + replacement + "".join(self.pieces[k + 1:])


def _pieces(text: str, spans) -> list[str]:
    pieces, last = [], 0
    for a, b in spans:
        pieces += [text[last:a], text[a:b]]
        last = b
    return pieces + [text[last:]]


def greedy_attack(predict: Predict, texts, labels, budgets, seed: int = 0, batch_size: int = 256,
                  max_tokens: int = MAX_TOKENS) -> dict:
    """DeepWordBug-style black-box attack. For each text the model gets right: score every token by how much
    deleting it lowers the true class's probability; then edit the tokens in that order, one at a time,
    each with the transformation (of token_edits) that lowers the true class's probability most, until the
    prediction changes or max(budgets) tokens are edited. All texts advance together, so the model sees
    many candidates per call.

    Returns accuracy after at most k edited tokens for each k in budgets (0: clean), the attack success rate
    (texts flipped among those first right), and the mean number of model queries per attacked text (the
    clean prediction, the deletions, the candidate edits)."""
    labels = np.asarray(labels)
    budgets = sorted({int(b) for b in budgets} | {0})
    probs = batched(predict, list(texts), batch_size)
    correct = probs.argmax(-1) == labels if len(texts) else np.zeros(0, bool)
    # 1. importance: the true class's probability drop when one token is deleted
    targets = [_Target(int(i), _pieces(texts[i], token_spans(texts[i], max_tokens)), [])
               for i in np.flatnonzero(correct)]
    deletions = [t.text(j) for t in targets for j in range(len(t.pieces) // 2)]
    deleted = batched(predict, deletions, batch_size)
    pos = 0
    for t in targets:
        n, y = len(t.pieces) // 2, labels[t.index]
        drop = probs[t.index, y] - deleted[pos:pos + n, y] if n else []  # a text without tokens
        pos += n
        t.order = sorted(range(n), key=lambda j: (-drop[j], j))  # most important first; ties: text order
        t.queries = 1 + n
    # 2. greedy edits: each round, every text not yet flipped edits its next token
    flipped_after = {}
    progress = Progress(f"text attack deepwordbug ({len(targets)} texts attacked)", budgets[-1], "rounds")
    for round_ in range(1, budgets[-1] + 1):
        candidates, owners = [], []
        for t in targets:
            if t.flipped or t.edited == len(t.order):
                continue
            token = t.order[t.edited]
            edits = token_edits(t.pieces[2 * token + 1], example_rng(seed, t.index, round_))
            candidates += [t.text(token, e) for e in edits]
            owners.append((t, token, edits))
        scored = batched(predict, candidates, batch_size)
        pos = 0
        for t, token, edits in owners:
            t.edited += 1
            t.queries += len(edits)
            if edits:
                options = scored[pos:pos + len(edits)]
                best = int(np.argmin(options[:, labels[t.index]]))
                t.pieces[2 * token + 1] = edits[best]
                t.flipped = bool(options[best].argmax() != labels[t.index])
                if t.flipped:
                    flipped_after[t.index] = round_
            pos += len(edits)
        progress.update(round_)
    progress.finish()
    n = len(texts)
    right = int(correct.sum())
    accuracy = [float(right - sum(1 for r in flipped_after.values() if r <= k)) / n if n else 0.0 for k in budgets]
    return {"budgets": budgets, "accuracy": accuracy, "examples": n, "attacked": len(targets),
            "success_rate": float(len(flipped_after) / len(targets)) if targets else 0.0,
            "queries_per_example": float(np.mean([t.queries for t in targets])) if targets else 0.0,
            "seed": seed}


def run_text_attacks(predict: Predict, texts, labels, attacks, rates, budgets, examples: int | None,
                     seed: int = 0, batch_size: int = 256) -> dict:
    """The configured text attacks on a fixed stratified sample of (texts, labels): eval_<split>.json's
    'text_attacks'. The seed is fixed, not the run's: every run meets the same noise."""
    pick = stratified_sample(labels, examples, seed)
    texts, labels = [texts[i] for i in pick], np.asarray(labels)[pick]
    out = {}
    if "noise" in attacks:
        out["noise"] = noise_accuracy(predict, texts, labels, [0.0, *rates], seed, batch_size)
    if "deepwordbug" in attacks:
        out["deepwordbug"] = greedy_attack(predict, texts, labels, budgets, seed, batch_size)
    return out


def model_predictor(model, encoder) -> Predict:
    """predict(texts) for a model that takes an encoder's features: raw strings in, the encoder run as it is
    (in-graph or, for a Hugging Face tokenizer, in Python), the model traced once."""
    import tensorflow as tf

    forward = tf.function(lambda x: tf.nn.softmax(tf.cast(model(x, training=False), tf.float32)),
                          reduce_retracing=True)
    return lambda texts: forward(encoder(tf.constant(list(texts), tf.string))).numpy()


def saved_model_predictor(serve) -> Predict:
    """predict(texts) for an exported SavedModel's serving_default signature."""
    import tensorflow as tf

    return lambda texts: serve(texts=tf.constant(list(texts), tf.string))["probabilities"].numpy()
