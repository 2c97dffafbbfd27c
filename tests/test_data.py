"""Data: the search split, deterministic batches, per-process shards, the three sources."""

import os

import numpy as np
import pytest

from lease_jax import builders, data
from lease_jax.configs import default


def _stream(n=40, batch=8, seed=3, kind='crop_flip', shuffle=True):
  images = np.arange(n * 4 * 4 * 3, dtype=np.uint8).reshape(n, 4, 4, 3)
  source = data.ArraySource(images, np.arange(n) % 10)
  transform = data.Transform(kind, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), padding=1)
  return data.BatchStream(source, np.arange(n), batch, seed, transform, shuffle=shuffle)


def _assert_balanced(labels, indices, num_classes):
  """Every class within ±1 of its proportional count in `indices`."""
  counts = np.bincount(labels[indices], minlength=num_classes)
  expected = len(indices) * np.bincount(labels, minlength=num_classes) / len(labels)
  assert np.all(np.abs(counts - expected) <= 1), (counts, expected)


def test_search_split_halves_the_training_set():
  labels = np.arange(50_000) % 10
  train, val = data.search_split(labels, 0.5, seed=0)
  assert len(train) == len(val) == 25_000
  assert not set(train) & set(val) and len(set(train) | set(val)) == 50_000
  with pytest.raises(data.DataError, match='train_portion'):
    data.search_split(labels[:100], 1.0, seed=0)


@pytest.mark.parametrize('sizes', [(25, 25, 25, 25), (40, 7, 23, 1, 9)])
def test_split_and_truncations_are_class_balanced_on_class_sorted_labels(sizes):
  # An image folder lists its files class by class: the split must not follow that order.
  labels = np.repeat(np.arange(len(sizes)), sizes)
  k = len(sizes)
  for limit in (-1, 10, 33, 50, len(labels) - 1):
    for portion in (0.5, 0.3):
      train, val = data.search_split(labels, portion, seed=7, limit=limit)
      subset = np.concatenate([train, val])
      assert len(np.unique(subset)) == len(subset)
      _assert_balanced(labels, subset, k)
      # each half, against the subset it was split from
      for half in (train, val):
        counts = np.bincount(labels[half], minlength=k)
        expected = len(half) * np.bincount(labels[subset], minlength=k) / len(subset)
        assert np.all(np.abs(counts - expected) <= 1), (limit, portion, counts, expected)
  for limit in range(1, len(labels) + 1, 7):  # every prefix of the order is balanced
    _assert_balanced(labels, data.balanced_subset(labels, 3, limit), k)


def test_split_is_a_pure_function_of_labels_and_seed():
  labels = np.repeat(np.arange(4), 30)
  first = data.search_split(labels, 0.5, seed=1, limit=60)
  again = data.search_split(labels.copy(), 0.5, seed=1, limit=60)  # another process, a resume
  for a, b in zip(first, again):
    np.testing.assert_array_equal(a, b)
  other = data.search_split(labels, 0.5, seed=2, limit=60)
  assert not np.array_equal(first[0], other[0])


def test_batches_are_a_function_of_seed_and_step():
  a, b = _stream(), _stream()
  for step in (0, 3, 7, 12):  # 5 batches per epoch: steps in epochs 0, 1, 2
    first, again = a.batch(step), b.batch(step)
    np.testing.assert_array_equal(first['image'], again['image'])
    np.testing.assert_array_equal(first['label'], again['label'])
  assert not np.array_equal(_stream(seed=4).batch(0)['image'], a.batch(0)['image'])


def test_every_epoch_is_a_fresh_permutation():
  stream = _stream()
  epochs = [np.concatenate([stream.global_indices(e * 5 + k) for k in range(5)])
            for e in range(3)]
  for order in epochs:
    assert sorted(order) == list(range(40))
  assert not np.array_equal(epochs[0], epochs[1])


def test_process_shards_make_up_the_global_batch():
  stream = _stream(kind='none')
  whole = stream.batch(6)
  parts = [stream.batch(6, i, 4) for i in range(4)]
  np.testing.assert_array_equal(np.concatenate([p['image'] for p in parts]), whole['image'])
  np.testing.assert_array_equal(np.concatenate([p['label'] for p in parts]), whole['label'])
  with pytest.raises(data.DataError, match='does not split over 3'):
    stream.batch(0, 0, 3)


def test_augmentation_draws_per_example_and_step():
  stream = _stream(n=8, batch=8, kind='crop_flip')
  plain = _stream(n=8, batch=8, kind='none', shuffle=False).batch(0)
  augmented = [stream.batch(k) for k in range(3)]
  assert all(b['image'].shape == plain['image'].shape for b in augmented)
  assert not np.array_equal(augmented[0]['image'], augmented[1]['image'])


def test_evaluation_stream_pads_and_masks_the_last_batch():
  stream = _stream(n=20, batch=8, kind='none', shuffle=False)
  assert stream.steps_per_epoch == 3
  last = stream.batch(2)
  np.testing.assert_array_equal(last['mask'], [1, 1, 1, 1, 0, 0, 0, 0])
  labels = np.concatenate([stream.batch(k)['label'][stream.batch(k)['mask'] > 0]
                           for k in range(3)])
  np.testing.assert_array_equal(labels, np.arange(20) % 10)


def test_training_stream_keeps_each_epochs_partial_batch():
  """DARTS's train.py (no `drop_last`): 22 examples in batches of 8 are 8, 8, 6 every epoch, each
  example once an epoch, reshuffled; on 4 devices the partial batch keeps 4 rows; a remainder
  below the device count is dropped as before (the stream without `keep_partial`)."""
  images = np.zeros((22, 4, 4, 3), np.uint8)
  images[:, 0, 0, 0] = np.arange(22)                       # each image's one pixel names it
  source = data.ArraySource(images, np.arange(22) % 10)
  transform = data.Transform('none', (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
  stream = lambda **kw: data.BatchStream(source, np.arange(22), 8, 3, transform, **kw)
  kept = stream(keep_partial=True)
  assert kept.steps_per_epoch == 3
  epochs = [[kept.batch(3 * e + k)['image'][:, 0, 0, 0] for k in range(3)] for e in range(2)]
  assert [len(b) for b in epochs[0]] == [8, 8, 6] == [len(b) for b in epochs[1]]
  seen = [np.sort(np.concatenate(batches)) for batches in epochs]
  np.testing.assert_array_equal(seen[0], seen[1])          # every example, once an epoch
  assert len(np.unique(seen[0])) == 22
  assert not np.array_equal(np.concatenate(epochs[0]), np.concatenate(epochs[1]))  # reshuffled
  assert kept.batch(2)['mask'].tolist() == [1.0] * 6
  assert [p['label'].shape[0] for p in (kept.batch(2, i, 2) for i in range(2))] == [3, 3]
  four = stream(keep_partial=True, multiple=4)
  assert four.steps_per_epoch == 3 and four.batch(2)['label'].shape == (4,)
  dropped = stream(keep_partial=True, multiple=8)         # 6 rows cannot split over 8
  assert dropped.steps_per_epoch == 2 == stream().steps_per_epoch
  np.testing.assert_array_equal(dropped.batch(2)['label'], stream().batch(2)['label'])


def test_cutout_zeroes_a_square():
  image = np.ones((32, 32, 3), np.float32)
  out = data.cutout(image, np.random.default_rng(0), 16)
  zeros = (out == 0).all(-1).sum()
  assert 0 < zeros <= 256


def test_packaged_digits():
  info, train, test = data.load_sources(default.get_config().data)
  assert (info.name, info.num_classes, info.image_shape) == ('digits', 10, (8, 8, 1))
  assert len(train) + len(test) == 1797 and len(test) == 360


def test_image_folder_source(tmp_path):
  from PIL import Image
  rng = np.random.default_rng(0)
  for split, count in (('train', 3), ('test', 1)):
    for name in ('cat', 'ant'):
      os.makedirs(tmp_path / split / name)
      for i in range(count):
        pixels = rng.integers(0, 255, (6, 6, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / split / name / f'{i}.png')
  config = default.get_config().data
  config.source, config.name, config.data_dir = 'image_folder', 'shapes', str(tmp_path)
  info, train, test = data.load_sources(config)
  assert info.num_classes == 2 and info.image_shape == (6, 6, 3)
  assert len(train) == 6 and len(test) == 2
  assert [int(train[i][1]) for i in range(6)] == [0, 0, 0, 1, 1, 1]  # 'ant' < 'cat'
  np.testing.assert_array_equal(train.labels, [0, 0, 0, 1, 1, 1])
  config_all = default.get_config()
  config_all.data = config
  config_all.search.batch_size = 1
  search_train, search_val = builders.search_streams(config_all, info, train)
  assert sorted(train.labels[search_train.indices]) == [0, 1, 1] or \
      sorted(train.labels[search_train.indices]) == [0, 0, 1]
  assert set(train.labels[search_val.indices]) == {0, 1}  # both classes in both halves
  # With the packaged default's name ('digits') left in the config, the folder names the data.
  config.name = 'digits'
  assert data.load_sources(config)[0].name == os.path.basename(tmp_path)
  (tmp_path / 'train' / 'ant' / '0.png').write_bytes(b'not a png')
  with pytest.raises(data.DataError, match='cannot decode image'):
    train[0]


def test_image_folder_needs_two_classes_with_images(tmp_path):
  from PIL import Image
  os.makedirs(tmp_path / 'train' / 'cat')
  Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / 'train' / 'cat' / '0.png')
  with pytest.raises(data.DataError, match='one class'):
    data.ImageFolderSource(str(tmp_path / 'train'))
  os.makedirs(tmp_path / 'train' / 'dog')
  with pytest.raises(data.DataError, match=r"class folders \['dog'\] hold no images"):
    data.ImageFolderSource(str(tmp_path / 'train'))


def test_tfds_source_without_tensorflow():
  import tensorflow_datasets as tfds
  config = default.get_config().data
  config.source, config.name = 'tfds', 'cifar10'
  with tfds.testing.mock_data(num_examples=12):
    info, train, test = data.load_sources(config)
    image, label = train[0]
    labels = train.labels
  assert labels.shape == (12,) and labels[0] == label
  assert info.num_classes == 10 and len(train) == 12
  assert image.shape == (32, 32, 3) and image.dtype == np.uint8 and 0 <= label < 10


def test_unprepared_tfds_dataset_is_a_data_error(tmp_path):
  config = default.get_config().data
  config.source, config.name, config.data_dir = 'tfds', 'cifar100', str(tmp_path)
  with pytest.raises(data.DataError, match="tfds dataset 'cifar100'.*not prepared"):
    data.load_sources(config)


def test_checkpointer_never_saves_a_non_finite_state(tmp_path):
  import jax.numpy as jnp

  from lease_jax import checkpoint
  ckpt = checkpoint.Checkpointer(str(tmp_path), {'seed': 0}, keep=2)
  ckpt.save(1, {'w': jnp.ones(3)})
  with pytest.raises(checkpoint.NonFiniteError, match='step 2'):
    ckpt.save(2, {'w': jnp.array([1.0, jnp.nan, 0.0])})
  ckpt.close()
  assert ckpt.last_saved_step() == 1
  with pytest.raises(checkpoint.NonFiniteError, match='non-finite loss at step 5'):
    checkpoint.check_finite_metrics(5, {'acc': jnp.float32(0.5), 'loss': jnp.float32(jnp.inf)})


def test_config_guard_holds_without_config_json(tmp_path):
  import jax.numpy as jnp

  from lease_jax import checkpoint
  ckpt = checkpoint.Checkpointer(str(tmp_path), {'seed': 0, 'search': {'gamma': 1.0}})
  ckpt.save(3, {'w': jnp.ones(2)})
  ckpt.close()
  os.remove(tmp_path / 'config.json')
  before = sorted(p.name for p in tmp_path.rglob('*'))
  with pytest.raises(checkpoint.CheckpointError, match=r"search.gamma \(1.0 -> 0.5\)"):
    checkpoint.Checkpointer(str(tmp_path), {'seed': 0, 'search': {'gamma': 0.5}})
  assert sorted(p.name for p in tmp_path.rglob('*')) == before
  same = checkpoint.Checkpointer(str(tmp_path), {'seed': 0, 'search': {'gamma': 1.0}})
  state, resumed = same.restore_or({'w': jnp.zeros(2)})
  assert resumed and float(state['w'].sum()) == 2.0 and (tmp_path / 'config.json').exists()
  same.close()
