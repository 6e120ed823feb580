"""The rules between a config's keys, and the defaults left to the backbone (its entry in core.registry.BACKBONES)
or to the checkpoint: run by core.loader once a config is read, so that a loaded config is final. Each rule
that differs between backbone families reads a field of the backbone's entry, never a family's name."""
from __future__ import annotations

import json
import os

from core.errors import UserError
from core.registry import BACKBONES, METHODS
from core.schema import ATTACKS, TEXT_ATTACKS, Config, EvalConfig


def resolve_defaults(cfg: Config, source: str) -> None:
    """Checks that span keys and fills the defaults left to the backbone or the checkpoint."""
    backbone = BACKBONES[cfg.model.name]
    if cfg.task == "lm":
        _check_language_model(cfg, source)
    else:
        _check_data(cfg, source)
    _resolve_model(cfg, source)
    _resolve_eval(cfg.eval, backbone)
    for reg in cfg.active_regularizers:
        reg.params.resolve(backbone.radii)
    _check_replays(cfg, source)


def _check_replays(cfg: Config, source: str) -> None:
    """A method that replays each batch (free) trains on its own perturbation as the step's loss: alone, unweighted."""
    replaying = [r for r in cfg.active_regularizers if METHODS[r.name].replays_batches]
    if not replaying:
        return
    name = replaying[0].name
    if len(cfg.active_regularizers) > 1:
        raise UserError(f"{source}: regularizer: {name} replays each batch and trains on its perturbation alone; "
                        "it does not combine with other regularizers")
    if replaying[0].weight != 1.0 or cfg.train.clean_weight != 1.0:
        raise UserError(f"{source}: regularizer: {name} trains on the loss at its perturbation in place of the clean "
                        "loss; its weight and train.clean_weight do not apply (leave them out)")


def _check_language_model(cfg: Config, source: str) -> None:
    d, m = cfg.data, cfg.model
    if not d.unlabeled:
        raise UserError(f"{source}: task: lm trains on data.unlabeled (text files); give it (list data.train's file "
                        "there too to train on the labelled texts)")
    given = [key for key in ("dataset", "train", "dev", "test") if getattr(d, key)]
    if given:
        raise UserError(f"{source}: task: lm reads only data.unlabeled; data.{given[0]} is for a classifier (list "
                        "its file under data.unlabeled to train on its texts)")
    if not BACKBONES[m.name].language_model:
        raise UserError(f"{source}: task: lm pretrains an LSTM (model.name {_names('language_model')}), not {m.name}")
    if cfg.active_regularizers:
        raise UserError(f"{source}: task: lm trains without a regularizer (regularizer: {{name: none}})")
    if m.init_from or m.pretrained_embeddings:
        raise UserError(f"{source}: model.init_from and pretrained_embeddings are for a classifier, not task: lm")
    if cfg.train.monitor != "val_accuracy":
        raise UserError(f"{source}: train.monitor: a language model is chosen by its held-out perplexity; "
                        "leave train.monitor out")
    if d.unlabeled_batch_size is None:
        d.unlabeled_batch_size = d.batch_size


def _names(field: str) -> str:
    """The backbones whose registry entry has `field` true: 'a or b'."""
    return " or ".join(name for name, b in BACKBONES.items() if getattr(b, field))


def _check_data(cfg: Config, source: str) -> None:
    d = cfg.data
    if (d.dataset is None) == (d.train is None):
        raise UserError(f"{source}: give exactly one of data.dataset (a built-in data set) or data.train "
                        "(a file)")
    if len(d.split) != 3 or any(x < 0 for x in d.split) or abs(sum(d.split) - 1.0) > 1e-6:
        raise UserError(f"data.split: expected three non-negative fractions (train, dev, test) summing "
                        f"to 1, got {d.split}")
    if d.num_labeled is not None and d.labeled_fraction is not None:
        raise UserError("data: give at most one of num_labeled and labeled_fraction")
    if d.length_bucketing == "on" and cfg.train.steps_per_epoch:
        raise UserError("data.length_bucketing sorts within each pass over the data; it does not combine with "
                        "train.steps_per_epoch")
    if d.text_b_column and (d.dataset or d.unlabeled or d.num_labeled or d.labeled_fraction):
        raise UserError("data.text_b_column: sentence pairs work with data files, without an unlabeled "
                        "stream (data.unlabeled, num_labeled, labeled_fraction)")
    if d.unlabeled_batch_size is None:
        d.unlabeled_batch_size = d.batch_size
    if d.labels is not None and len(set(d.labels)) != len(d.labels):
        raise UserError(f"data.labels: labels must be distinct, got {d.labels}")


def _resolve_model(cfg: Config, source: str) -> None:
    m, backbone = cfg.model, BACKBONES[cfg.model.name]
    if cfg.train.jit_compile and not backbone.xla:
        raise UserError(f"train.jit_compile: XLA compiles the tf-keras LSTM anew at every step (it treats its "
                        f"weights as compile-time constants), which makes model.name: {m.name} hundreds "
                        f"of times slower; use it with a Hugging Face encoder (model.name {_names('xla')})")
    if backbone.checkpoint and not (m.pretrained or m.config_overrides):
        raise UserError(f"{source}: model.name {m.name} needs model.pretrained (a checkpoint directory or hub "
                        "name) or model.config_overrides (to build a randomly initialized encoder)")
    if backbone.checkpoint and m.variational_dropout:
        raise UserError(f"{source}: model.variational_dropout: the LSTMs' embedding dropout; a Hugging Face "
                        "encoder's dropout is its checkpoint's (model.config_overrides)")
    if not backbone.checkpoint and (m.pretrained or m.config_overrides or m.lower_case is not None):
        raise UserError(f"{source}: model.pretrained, config_overrides and lower_case are for a Hugging Face "
                        f"encoder (model.name {_names('checkpoint')}), not {m.name}")
    for key in ("layerwise_lr_decay", "gradual_unfreezing"):
        if getattr(cfg.train, key) not in (None, False) and cfg.train.optimizer == "sgd":
            raise UserError(f"{source}: train.{key}: scales Adam's steps; use train.optimizer adam or adamw")
    if m.pooling is None:
        m.pooling = backbone.poolings[0]
    if m.pooling not in backbone.poolings:
        raise UserError(f"model.pooling: '{m.pooling}' is not one of {', '.join(backbone.poolings)} for {m.name}")
    if m.normalize_embeddings is None:  # a language model normalizes like the classifiers it starts, and they
        # follow it (model.init_from checks the two agree)
        m.normalize_embeddings = ((bool(cfg.active_regularizers) or cfg.task == "lm" or bool(m.init_from))
                                  and backbone.normalizes_embeddings)
    if m.init_from and not backbone.language_model:
        raise UserError(f"{source}: model.init_from starts an LSTM (model.name {_names('language_model')}) from a "
                        f"language-model run, not {m.name}")
    if m.init_from and (m.vocab_file or m.pretrained_embeddings):
        given = "model.vocab_file" if m.vocab_file else "model.pretrained_embeddings"
        raise UserError(f"{source}: model.init_from takes the language model's vocabulary and embeddings; it does "
                        f"not combine with {given} (leave it out)")
    if not backbone.normalizes_embeddings and m.normalize_embeddings:
        raise UserError(f"model.normalize_embeddings: only for model.name {_names('normalizes_embeddings')} (a "
                        "pretrained encoder's embeddings are used as they are)")
    if backbone.checkpoint and m.lower_case is None:
        m.lower_case = checkpoint_lowercases(m.pretrained)


def checkpoint_lowercases(pretrained: str | None) -> bool | None:
    """do_lower_case of a checkpoint's tokenizer_config.json (True where the file says nothing; a randomly
    initialized encoder is uncased too), from its directory or, for a hub name, its snapshot in the Hugging
    Face cache; None for a hub name that is not cached yet (the run reads it once the checkpoint is downloaded)."""
    if not pretrained:
        return True
    directory = pretrained if os.path.isdir(pretrained) else _cached_snapshot(pretrained)
    if directory is None:
        return None
    path = os.path.join(directory, "tokenizer_config.json")
    if not os.path.exists(path):
        return True
    try:
        with open(path, encoding="utf-8") as f:
            return bool(json.load(f).get("do_lower_case", True))
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: cannot be read as JSON ({e})") from None


def _cached_snapshot(name: str) -> str | None:
    """A hub name's snapshot directory in the local Hugging Face cache, without the network; None if there is
    none (or the name is not a hub name: preparing the run reports that)."""
    from huggingface_hub import snapshot_download  # light: no TensorFlow
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    try:
        return snapshot_download(name, local_files_only=True)
    except (HFValidationError, LocalEntryNotFoundError, OSError):
        return None


def _resolve_eval(e: EvalConfig, backbone) -> None:
    unknown = [a for a in e.attacks if a not in ATTACKS]
    if unknown:
        raise UserError(f"eval.attacks: '{unknown[0]}' is not one of: {', '.join(ATTACKS)}")
    unknown = [a for a in e.text_attacks if a not in TEXT_ATTACKS]
    if unknown:
        raise UserError(f"eval.text_attacks: '{unknown[0]}' is not one of: {', '.join(TEXT_ATTACKS)}")
    if any(not 0 <= x <= 1 for x in e.text_noise_rates):
        raise UserError(f"eval.text_noise_rates: rates are between 0 and 1, got {e.text_noise_rates}")
    if any(b < 1 for b in e.text_attack_budgets):
        raise UserError(f"eval.text_attack_budgets: budgets are numbers of tokens, at least 1, got "
                        f"{e.text_attack_budgets}")
    for key, attack in (("text_noise_rates", "noise"), ("text_attack_budgets", "deepwordbug")):
        if not getattr(e, key) and attack in e.text_attacks:
            raise UserError(f"eval.{key}: an empty list, but eval.text_attacks has {attack}")
    if e.epsilons is None:
        e.epsilons = list(backbone.epsilons)
    if e.fgsm_epsilons is None:
        e.fgsm_epsilons = list(backbone.fgsm_epsilons)
    for key, attacks in (("epsilons", {"fgm", "pgd"}), ("fgsm_epsilons", {"fgsm"})):
        if any(x < 0 for x in getattr(e, key)):
            raise UserError(f"eval.{key}: radii must be non-negative, got {getattr(e, key)}")
        if not getattr(e, key) and attacks & set(e.attacks):
            raise UserError(f"eval.{key}: an empty list, but eval.attacks has {', '.join(sorted(attacks & set(e.attacks)))}"
                            f"; give at least one radius, or leave those attacks out of eval.attacks")
