
import numpy as np
import pytest
import tensorflow as tf
import tf_keras
import yaml
from conftest import tiny_config_dict

from core.errors import UserError
from core.loader import load_config
from core.schema import TrainConfig
from dataset.streams import training_stream
from model.bert import encoder_depth
from trainer.optimizers import ExactClipping, WarmupLinearDecay, layerwise_multipliers, make_optimizer
from trainer.run import build_model, prepare


def test_warmup_then_linear_decay_by_hand():
    schedule = WarmupLinearDecay(peak=1.0, total_steps=10, warmup_steps=4)
    got = [float(schedule(step)) for step in range(11)]
    want = [0.25, 0.5, 0.75, 1.0, 1.0, 5 / 6, 4 / 6, 3 / 6, 2 / 6, 1 / 6, 0.0]
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_layerwise_multipliers_by_depth():
    names = ["m/bert/embeddings/word_embeddings/weight:0", "m/bert/encoder/layer_._0/attention/k:0",
             "m/bert/encoder/layer_._1/output/dense/kernel:0", "m/bert/pooler/dense/kernel:0", "head/kernel:0"]
    got = layerwise_multipliers({n: encoder_depth(n, 2) for n in names}, num_layers=2, decay=0.5)
    assert [got[n] for n in names] == [0.125, 0.25, 0.5, 1.0, 1.0]


def _one_step(tmp_path, tiny_files, tiny_bert_dir, train_extra):
    cfg = tiny_config_dict(tiny_files, "none")
    cfg["model"] = {"name": "bert", "pretrained": tiny_bert_dir, "head_dropout": 0.0}
    cfg["train"].update({"optimizer": "adamw", "learning_rate": 1e-2, "clip_norm": None, **train_extra})
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    config = load_config(str(tmp_path / "c.yaml"))
    prepared = prepare(config)
    tf_keras.utils.set_random_seed(0)
    model = build_model(config, prepared, 2)
    train_ds = training_stream(config, prepared.data, prepared.text_encoder)
    before = {v.name: v.numpy().copy() for v in model.trainable_variables}
    model.make_train_function()(iter(train_ds.take(1)))
    return {v.name: v.numpy() - before[v.name] for v in model.trainable_variables}


def test_layerwise_decay_scales_each_layers_step(tmp_path, tiny_files, tiny_bert_dir):
    plain = _one_step(tmp_path, tiny_files, tiny_bert_dir, {})
    decayed = _one_step(tmp_path, tiny_files, tiny_bert_dir, {"layerwise_lr_decay": 0.5})
    checked = 0
    for name, delta in plain.items():
        suffix = name.split("/", 1)[1]  # the models' outer names differ
        other = next(v for k, v in decayed.items() if k.split("/", 1)[1] == suffix)
        if "word_embeddings" in name:
            np.testing.assert_allclose(other, 0.125 * delta, rtol=1e-3, atol=1e-7)
            checked += 1
        elif "layer_._0/" in name and "kernel" in name:
            np.testing.assert_allclose(other, 0.25 * delta, rtol=1e-3, atol=1e-7)
            checked += 1
        elif name.startswith("head") or "/head/" in name:
            np.testing.assert_allclose(other, delta, rtol=1e-5, atol=1e-8)
            checked += 1
    assert checked >= 4


def test_layerwise_decay_and_gradual_unfreezing_need_adam(tmp_path, tiny_files):
    for key, value in (("layerwise_lr_decay", 0.9), ("gradual_unfreezing", True)):
        cfg = tiny_config_dict(tiny_files, "none", train={key: value, "optimizer": "sgd"})
        (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
        with pytest.raises(UserError, match=f"train.{key}: .*adam"):
            load_config(str(tmp_path / "c.yaml"))


def _lstm_steps(tmp_path, tiny_files, train_extra, steps=1, epochs=None):
    """The change of each variable (by its role: embedding, lstm, head) over `steps` train steps of a tiny LSTM
    classifier (one step per epoch, so that an epoch's callbacks run between steps when `epochs`)."""
    cfg = tiny_config_dict(tiny_files, "none", train={"clip_norm": None, **train_extra})
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    config = load_config(str(tmp_path / "c.yaml"))
    prepared = prepare(config)
    tf_keras.utils.set_random_seed(0)
    model = build_model(config, prepared, 2)
    clf = model.classifier
    roles = {"embedding": clf.embedding.table, "lstm": clf.backbone.layers_[0].trainable_variables[0],
             "head": clf.head.kernel}
    start = {k: v.numpy().copy() for k, v in roles.items()}
    train_ds = training_stream(config, prepared.data, prepared.text_encoder)
    deltas = []
    if epochs:
        from trainer.optimizers import GradualUnfreezing

        callback = GradualUnfreezing(model.optimizer, clf.num_layers + 1)
    for k in range(steps):
        if epochs:
            callback.on_epoch_begin(k)
        model.make_train_function()(iter(train_ds.skip(k).take(1)))
        deltas.append({r: v.numpy() - start[r] for r, v in roles.items()})
    return deltas


def test_layerwise_decay_scales_each_lstm_layers_step(tmp_path, tiny_files):
    """Against plain Adam's first step from the same weights and batch: the embeddings move decay**2 times as
    far, the LSTM decay times, the head as far."""
    plain = _lstm_steps(tmp_path, tiny_files, {})[0]
    decayed = _lstm_steps(tmp_path, tiny_files, {"layerwise_lr_decay": 0.5})[0]
    assert all(np.abs(plain[r]).max() > 1e-4 for r in plain)
    np.testing.assert_allclose(decayed["embedding"], 0.25 * plain["embedding"], rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(decayed["lstm"], 0.5 * plain["lstm"], rtol=1e-4, atol=1e-7)  # float32 rounding of w + step
    np.testing.assert_allclose(decayed["head"], plain["head"], rtol=1e-5, atol=1e-8)


def test_gradual_unfreezing_trains_the_head_then_the_lstm_then_the_embeddings(tmp_path, tiny_files):
    plain = _lstm_steps(tmp_path, tiny_files, {})[0]
    first, second, third = _lstm_steps(tmp_path, tiny_files, {"gradual_unfreezing": True}, steps=3, epochs=True)
    # epoch 1: the head alone, and it takes plain Adam's first step (the same gradient: nothing else moved)
    assert not first["embedding"].any() and not first["lstm"].any()
    np.testing.assert_allclose(first["head"], plain["head"], rtol=1e-5, atol=1e-8)
    # epoch 2: the LSTM too; epoch 3: everything
    assert not second["embedding"].any() and np.abs(second["lstm"]).max() > 1e-4
    assert np.abs(third["embedding"]).max() > 1e-4


def test_adamw_skips_weight_decay_on_biases_and_layer_norms():
    optimizer = make_optimizer(TrainConfig(optimizer="adamw", weight_decay=0.1, learning_rate=0.1))
    bias, kernel = tf.Variable([1.0], name="dense/bias"), tf.Variable([1.0], name="dense/kernel")
    optimizer.apply_gradients([(tf.zeros([1]), bias), (tf.zeros([1]), kernel)])
    assert bias.numpy()[0] == 1.0 and kernel.numpy()[0] == pytest.approx(1.0 - 0.1 * 0.1)


def test_clip_norm_is_the_norm_of_the_summed_gradient_of_a_table_whose_rows_repeat():
    """A lookup of rows 1, 1, 1 and 3 of a table and a dense weight: the table's gradient comes as four slices.
    Clipped to 1, the update is the one of the dense gradient scaled by 1 / its global norm (row 1's gradient is
    three times a single lookup's: the slices' norm would be sqrt(3) times it)."""
    table = tf.Variable(np.arange(10, dtype=np.float32).reshape(5, 2) / 10)
    w = tf.Variable([0.5, -1.0])
    assert all(isinstance(make_optimizer(TrainConfig(optimizer=name)), ExactClipping) for name in ("sgd", "adam", "adamw"))
    optimizer = make_optimizer(TrainConfig(optimizer="sgd", learning_rate=0.1, clip_norm=1.0))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.gather(table, [1, 1, 1, 3]) * w) + tf.reduce_sum(w ** 2)
    grads = tape.gradient(loss, [table, w])
    assert isinstance(grads[0], tf.IndexedSlices)
    before = [table.numpy(), w.numpy()]
    optimizer.apply_gradients(zip(grads, [table, w]))
    # the plain formula, dense: g_table rows 1 and 3 = 3w and w; g_w = sum of the looked-up rows + 2w
    g_table = np.zeros((5, 2), np.float32)
    g_table[1], g_table[3] = 3 * before[1], before[1]
    g_w = 3 * before[0][1] + before[0][3] + 2 * before[1]
    scale = 1.0 / np.sqrt((g_table ** 2).sum() + (g_w ** 2).sum())
    assert scale < 1  # the clip is active
    # SGD's first step with momentum: -lr * g
    np.testing.assert_allclose(table.numpy(), before[0] - 0.1 * scale * g_table, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(w.numpy(), before[1] - 0.1 * scale * g_w, rtol=1e-5)
