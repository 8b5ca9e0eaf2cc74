"""tf.data input: TFRecord shards -> (images, targets) batches for training and evaluation.

Training stream (``training=True``): for each epoch e (and each pass n over the split
within it, when ``steps_per_epoch`` asks for more than one pass), the shard list is
shuffled with a seed derived from (seed, e, n), shards are read in parallel (interleave),
records are shuffled within blocks of ``shuffle_buffer`` with stateless seeds, batched
(remainder dropped) and cut to exactly ``steps_per_epoch`` batches. (Stateless shuffles
rather than ``Dataset.shuffle``, whose seed cannot be a tensor under a global seed.)
Batch g of the whole run (g = e * steps_per_epoch + step) is
then parsed, decoded, resized and augmented with the stateless seed (seed, g).

So the stream is a pure function of (seed, epoch, step): a run resumed at global batch g
(``first_epoch`` + ``skip_batches``) sees exactly the batches an uninterrupted run would
have seen from g on (in ``deterministic`` mode, which also fixes the order in which
parallel readers deliver records).

Evaluation stream (``training=False``): shards and records in file order, no
augmentation, the last batch may be smaller.

Images are float32 [N, S, S, 3], RGB in 0..255 (the model rescales inside). Targets are a
dict keyed by the model's output names, made by their heads (:func:`tfdldl.heads.make_targets`:
"distribution" float32 [N, K] the stored Gaussian label distribution, "value" float32 [N]
the label, "ranking" float32 [N, K-1] [y > l_k]).
"""

from __future__ import annotations

from typing import Optional

import tensorflow as tf

from tfdldl import augment, example_schema, example_spec, heads, tf_image_io, tfrecord_reader
from tfdldl.experiment import AugmentConfig
from tfdldl.label_space import LabelSpace
from tfdldl.manifest import Manifest, ManifestError

# Shards read at once by the interleave.
MAX_PARALLEL_SHARDS = 16
# Passes over the split one epoch may take (steps_per_epoch beyond one pass); a bound only.
PASSES_LIMIT = 1_000_000


def steps_per_epoch(manifest: Manifest, split: str, batch_size: int) -> int:
    """Full batches in one pass over ``split``.

    Raises:
      ManifestError: the split is missing, empty, or smaller than one batch.
    """
    manifest.shards(split)  # raises for a missing or empty split
    steps = manifest.counts[split] // batch_size
    if steps == 0:
        raise ManifestError(
            f"split '{split}' of {manifest.root} has {manifest.counts[split]} records, fewer "
            f"than one batch of {batch_size}; lower train.batch_size or build more data")
    return steps


def make_dataset(manifest: Manifest, split: str, batch_size: int, outputs: heads.Outputs,
                 training: bool, augment_cfg: Optional[AugmentConfig] = None,
                 image_size: Optional[int] = None, seed: int = 0, deterministic: bool = False,
                 *, label_space: Optional[LabelSpace] = None,
                 steps_per_epoch: Optional[int] = None, shuffle_buffer: int = 4096,
                 first_epoch: int = 0,
                 epochs: int = 1, skip_batches: int = 0,
                 shard: Optional[tuple[int, int]] = None,
                 in_memory: bool = False) -> tf.data.Dataset:
    """The dataset of ``split``: (images float32 [N, S, S, 3] 0..255, targets dict).

    Args:
      manifest: the TFRecord folder (tfdldl.manifest.read_manifest).
      split: split name ("train", "val", "test").
      batch_size: records per batch (per worker when ``shard`` is given).
      outputs: the model's heads (tfdldl.heads.of_model), or its output names; the heads
        make the targets (tfdldl.heads.make_targets).
      training: shuffle, augment, drop the remainder, and run epochs as described above.
      augment_cfg: augmentation (training only); None = no augmentation.
      image_size: S, the model's input side; None = the stored size.
      seed: seed of every shuffle and augmentation.
      deterministic: fix the order of parallel reads (reproducible, a little slower).
      label_space: when given, the data must have been built on it (else ManifestError).
      steps_per_epoch: training batches per epoch; None = one pass over the split.
      shuffle_buffer: records are shuffled within consecutive blocks of this many (on top
        of a shuffled shard order); data_prep already shuffles records into shards.
      first_epoch, epochs: the training stream covers epochs [first_epoch, epochs).
      skip_batches: batches of ``first_epoch`` already done (resuming mid-epoch).
      shard: (count, index): keep every count-th record from index on (one worker's part).
      in_memory: training only: decode the split once into memory and gather batches
        from there (tfdldl.experiment.DataConfig.in_memory).
    Raises:
      ManifestError: missing/empty split, other label space, too few records, unknown output,
        a shard that is not the one its build wrote (tfrecord_reader.verify_shards).
    """
    files = _checked_shards(manifest, split, outputs, label_space)
    size = int(image_size or manifest.image_size)
    decode = _decoder(manifest.label_space, outputs, size)
    options = tf.data.Options()
    options.deterministic = bool(deterministic or shard is not None)
    if not training:
        return _evaluation_dataset(files, manifest.counts[split], batch_size, decode,
                                   shard).with_options(options)

    steps = steps_per_epoch or _passes(manifest, split, batch_size, shard)
    if skip_batches >= steps:
        raise ValueError(f"skip_batches {skip_batches} must be < steps_per_epoch {steps}")
    batches, load = _training_batches(manifest, split, files, batch_size, decode, seed, steps,
                                      shuffle_buffer, options.deterministic, shard, in_memory)

    dataset = _epochs(batches, load, augment_cfg, seed, steps, first_epoch, epochs,
                      skip_batches)
    return dataset.prefetch(tf.data.AUTOTUNE).with_options(options)


def _checked_shards(manifest: Manifest, split: str, outputs: heads.Outputs,
                    label_space: Optional[LabelSpace]) -> list[str]:
    """The shard files of ``split``, after checking the label space (when given), the
    outputs, and every shard against what its build wrote.

    Raises:
      ManifestError: another label space, an unknown output, a missing or empty split, a
        damaged or swapped shard.
    """
    if label_space is not None:
        manifest.require_label_space(label_space)
    try:
        heads.check_outputs(outputs)
    except ValueError as error:
        raise ManifestError(str(error)) from None
    files = manifest.shards(split)
    tfrecord_reader.verify_shards(manifest, [split])  # a damaged or swapped shard, by name
    return files


def _training_batches(manifest: Manifest, split: str, files: list[str], batch_size: int,
                      decode, seed: int, steps: int, shuffle_buffer: int, deterministic: bool,
                      shard: Optional[tuple[int, int]], in_memory: bool):
    """(batches: epoch -> its ``steps`` batches, load: batch -> (images, targets)): from the
    split decoded once into memory (``in_memory``), or streamed from ``files``."""
    if in_memory:
        return _in_memory_batches(manifest, split, batch_size, decode, seed, steps, shard)
    return _streamed_batches(files, batch_size, seed, steps, shuffle_buffer, deterministic,
                             shard), decode


def _epochs(batches, load, augment_cfg: Optional[AugmentConfig], seed: int, steps: int,
            first_epoch: int, epochs: int, skip_batches: int) -> tf.data.Dataset:
    """Epochs [first_epoch, epochs) of ``batches`` (epoch -> its batches) from batch
    ``skip_batches`` on, each loaded by ``load`` and augmented with the stateless seed
    (seed, global batch index)."""

    def augmented(index, batch):
        # Loaded after .skip: a resumed run does not decode the batches it skips.
        images, targets = load(batch)
        if augment_cfg is not None:
            images = augment.augment_batch(
                images, tf.stack([tf.constant(seed, tf.int64), index]), augment_cfg)
        return images, targets

    return (tf.data.Dataset.range(first_epoch, epochs)
            .flat_map(batches)
            .enumerate(start=first_epoch * steps)
            .skip(skip_batches)
            .map(augmented, num_parallel_calls=tf.data.AUTOTUNE)
            .apply(tf.data.experimental.assert_cardinality(
                (epochs - first_epoch) * steps - skip_batches)))


def _evaluation_dataset(files, count: int, batch_size: int, decode,
                        shard: Optional[tuple[int, int]]) -> tf.data.Dataset:
    """The records of ``files`` in file order (as tfdldl.evaluate reads), decoded in
    batches; of known length (``count`` records) unless sharded."""
    records = tf.data.TFRecordDataset(files)
    if shard is not None:
        records = records.shard(*shard)
    # Evaluation promises file order: keep it even when training allows reordering.
    dataset = records.batch(batch_size).map(decode, num_parallel_calls=tf.data.AUTOTUNE,
                                            deterministic=True)
    if shard is None:  # a known length: Keras then knows where an evaluation ends
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(
            -(-count // batch_size)))
    return dataset.prefetch(tf.data.AUTOTUNE)


def _streamed_batches(files, batch_size: int, seed: int, steps: int, shuffle_buffer: int,
                      deterministic: bool, shard: Optional[tuple[int, int]]):
    """epoch (int64 scalar) -> dataset of the epoch's ``steps`` batches of serialized
    records, read from the shards (shuffled shard order, shuffled blocks of records)."""

    def one_pass(pass_seed):
        order = tf.random.experimental.stateless_shuffle(tf.constant(files), pass_seed)
        blocks = _records(order, deterministic, shard).batch(shuffle_buffer)
        return blocks.enumerate().map(
            lambda i, block: tf.random.experimental.stateless_shuffle(
                block, tf.random.experimental.stateless_fold_in(pass_seed, i))).unbatch()

    def epoch_batches(epoch):
        epoch_seed = tf.stack([tf.constant(seed, tf.int64), epoch])
        passes = tf.data.Dataset.range(PASSES_LIMIT).map(
            lambda n: tf.random.experimental.stateless_fold_in(epoch_seed, n))
        return (passes.flat_map(one_pass)
                .batch(batch_size, drop_remainder=True).take(steps))

    return epoch_batches


def _in_memory_batches(manifest: Manifest, split: str, batch_size: int, decode, seed: int,
                       steps: int, shard: Optional[tuple[int, int]]):
    """(epoch -> dataset of the epoch's ``steps`` batches of face indexes, the function
    gathering a batch's faces and targets): every face of ``split`` is decoded once (uint8,
    at the input size) and held in memory; each pass over the faces is a stateless shuffle
    of their indexes."""
    records = tf.data.TFRecordDataset(manifest.shards(split))
    if shard is not None:
        records = records.shard(*shard)
    image_parts, target_parts = [], []
    for images, targets in records.batch(1024).map(decode, num_parallel_calls=tf.data.AUTOTUNE):
        image_parts.append(tf.cast(tf.round(images), tf.uint8))
        target_parts.append(targets)
    with tf.init_scope():  # plain variables, also when called under a distribution strategy
        images = tf.Variable(tf.concat(image_parts, 0), trainable=False, name="faces")
        targets = {key: tf.Variable(tf.concat([part[key] for part in target_parts], 0),
                                    trainable=False, name=key.replace("/", "_"))
                   for key in target_parts[0]}
    count = int(images.shape[0])

    def gather(indexes):
        return (tf.cast(tf.gather(images, indexes), tf.float32),
                {key: tf.gather(value, indexes) for key, value in targets.items()})

    def epoch_batches(epoch):
        epoch_seed = tf.stack([tf.constant(seed, tf.int64), epoch])
        passes = tf.data.Dataset.range(PASSES_LIMIT).map(
            lambda n: tf.random.experimental.stateless_shuffle(
                tf.range(count, dtype=tf.int64),
                tf.random.experimental.stateless_fold_in(epoch_seed, n)))
        return passes.unbatch().batch(batch_size, drop_remainder=True).take(steps)

    return epoch_batches, gather


def _passes(manifest: Manifest, split: str, batch_size: int,
            shard: Optional[tuple[int, int]]) -> int:
    """Full batches in one pass over this worker's part of ``split``."""
    workers = shard[0] if shard else 1
    return steps_per_epoch(manifest, split, batch_size * workers)


def _records(files: tf.Tensor, deterministic: bool,
             shard: Optional[tuple[int, int]]) -> tf.data.Dataset:
    """Serialized records of ``files``, read in parallel; one worker's part when sharded."""
    count = int(files.shape[0])
    records = tf.data.Dataset.from_tensor_slices(files).interleave(
        tf.data.TFRecordDataset, cycle_length=min(count, MAX_PARALLEL_SHARDS),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    if shard is not None:
        records = records.shard(*shard)
    return records


def _decoder(label_space: LabelSpace, outputs: heads.Outputs, size: int):
    """A function: serialized records [N] -> (images [N, S, S, 3] float32, targets); the
    targets' heads name the record features to parse (tfdldl.heads.record_fields)."""
    features = example_spec.feature_spec([example_schema.IMAGE, *heads.record_fields(outputs)],
                                         label_space.num_classes)

    def decode_one(encoded):
        # The stored faces are JPEGs written by data_prep: decoded by the one TF decoder
        # (accurate IDCT, as tfdldl.image_io and the serving graph decode them).
        return tf_image_io.resize(tf.io.decode_jpeg(
            encoded, channels=3, dct_method=tf_image_io.JPEG_DCT_METHOD), size)

    def decode(serialized):
        parsed = tf.io.parse_example(serialized, features)
        images = tf.map_fn(decode_one, parsed.pop(example_schema.IMAGE),
                           fn_output_signature=tf.TensorSpec([size, size, 3], tf.float32))
        return images, heads.make_targets(outputs, parsed, label_space)

    return decode

