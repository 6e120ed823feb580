"""The tf.distribute strategy a run trains under, from the YAML `distribute` section.

none: the default strategy (one device). mirrored: synchronous data parallelism over the devices of one
machine. multi_worker: the same over several machines, which TF_CONFIG describes. tpu: a TPU. The global
batch is `data.batch_size`, split across replicas; AdversarialModel.train_step weights each replica's
gradients by its share of the global batch, and perturbations are normalized per example, so the split
changes nothing but speed. Under multi_worker each worker builds its own part of the training stream
(`per_worker`).
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile

import tensorflow as tf
import tf_keras

from core.errors import UserError
from core.schema import DistributeConfig
from dataset.pipeline import Shard

log = logging.getLogger(__name__)


def make_strategy(cfg: DistributeConfig) -> tf.distribute.Strategy:
    """Creates the strategy; call it before any other TensorFlow work (multi-worker collectives must be
    configured before the runtime starts)."""
    if cfg.strategy == "none":
        return tf.distribute.get_strategy()
    if cfg.strategy == "mirrored":
        devices = cfg.devices
        if devices is None and not tf.config.list_physical_devices("GPU"):
            log.warning("distribute.strategy mirrored: no GPU found, training on the CPU (one replica)")
        try:
            strategy = tf.distribute.MirroredStrategy(devices)
        except (ValueError, RuntimeError) as e:
            raise UserError(f"distribute.devices: {devices}: {str(e).splitlines()[0]}") from None
    elif cfg.strategy == "multi_worker":
        strategy = _multi_worker(cfg)
    else:
        strategy = _tpu(cfg)
    log.info("distribute: %s, %d replicas", cfg.strategy, strategy.num_replicas_in_sync)
    return strategy


def _multi_worker(cfg: DistributeConfig) -> tf.distribute.Strategy:
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        raise UserError("distribute.strategy multi_worker needs the TF_CONFIG environment variable on every "
                        "worker, e.g. {\"cluster\": {\"worker\": [\"host1:12345\", \"host2:12345\"]}, "
                        "\"task\": {\"type\": \"worker\", \"index\": 0}}")
    try:
        tf_config = json.loads(raw)
        workers = tf_config["cluster"]["worker"]
        task = tf_config["task"]
        assert task["type"] in ("worker", "chief") and isinstance(workers, list)
    except (ValueError, KeyError, TypeError, AssertionError):
        raise UserError(f"TF_CONFIG: expected {{\"cluster\": {{\"worker\": [...]}}, \"task\": {{\"type\": "
                        f"\"worker\", \"index\": i}}}}, got {raw[:200]}") from None
    implementation = {"auto": tf.distribute.experimental.CommunicationImplementation.AUTO,
                      "ring": tf.distribute.experimental.CommunicationImplementation.RING,
                      "nccl": tf.distribute.experimental.CommunicationImplementation.NCCL}[cfg.communication]
    options = tf.distribute.experimental.CommunicationOptions(implementation=implementation)
    return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)


def _tpu(cfg: DistributeConfig) -> tf.distribute.Strategy:
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=cfg.tpu or "")
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, RuntimeError, tf.errors.OpError) as e:
        where = f"'{cfg.tpu}'" if cfg.tpu else "on this machine"
        raise UserError(f"distribute.tpu: no TPU found {where}: {str(e).splitlines()[0]}") from None
    return tf.distribute.TPUStrategy(resolver)


def per_worker(strategy: tf.distribute.Strategy, make):
    """The training stream for fit(): `make(shard)` builds one worker's part of it. Under multi_worker every worker
    builds its own (tf.distribute's distribute_datasets_from_function, through Keras' DatasetCreator): only its
    pieces of each global batch, and only its own files of a streamed corpus; else the global stream, make(None),
    which the strategy splits across the machine's replicas."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return make(None)

    def dataset_fn(context: tf.distribute.InputContext) -> tf.data.Dataset:
        replicas = context.num_replicas_in_sync // context.num_input_pipelines
        return make(Shard(context.input_pipeline_id, context.num_input_pipelines, replicas))

    return tf_keras.utils.experimental.DatasetCreator(dataset_fn)


@contextlib.contextmanager
def output_dir(run_dir: str, chief: bool):
    """Where this process saves checkpoints and logs: run_dir on the chief; on another worker a temporary
    directory, removed at the end (under multi_worker every worker saves: saving takes part in collectives)."""
    if chief:
        yield run_dir
        return
    out = tempfile.mkdtemp(prefix="worker-")
    try:
        yield out
    finally:
        shutil.rmtree(out, ignore_errors=True)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the run directory: always, except on the non-chief workers of a
    multi-worker run (worker 0 is the chief unless TF_CONFIG names one)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or resolver is None:
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    has_chief = "chief" in (resolver.cluster_spec().as_dict() or {})
    return task_type == "chief" or (not has_chief and task_type == "worker" and task_id == 0) or task_type is None
