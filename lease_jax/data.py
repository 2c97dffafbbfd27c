"""Data: sources, the search split, deterministic batch streams, augmentation.

The data stack, and why:
  * Sources are random-access (`len`, `[i] -> (uint8 HWC image, label)`):
      - `packaged`: scikit-learn's digits (1,797 real 8x8 images, installed with the package): the
        offline default, so the README's command works on a fresh machine with no download;
      - `image_folder`: `root/{train,test}/<class>/*.jpg|png`, class index = sorted folder name
        (e.g. ../shared/data/cifar10-jpeg.tar.gz once extracted), decoded lazily with Pillow;
      - `tfds`: a TensorFlow Datasets builder read through `tfds.data_source` (array_record, no
        TensorFlow needed to *read*). Preparing CIFAR-10/100 or ImageNet the first time needs
        TensorFlow (`pip install tensorflow`; `tfds build cifar10 --file_format=array_record`,
        ImageNet from its manual download); this package does not depend on it.
  * Order comes from grain (`MapDataset.shuffle(seed).batch(...).repeat()`): a random-access,
    TF-free pipeline, reshuffled every epoch from the seed. Batch `k` of a stream is a pure
    function of (seed, k): there is no iterator state, the data position *is* the step, and a
    resumed run reads exactly the batches an uninterrupted run would. Each process of a
    multi-host run reads only its own rows of every global batch.
  * Augmentation is numpy, per example, seeded by (seed, step, row of the global batch): the
    same whatever the number of processes or devices.

The search split (DARTS): `train_portion` of the training set is the search's train set
(D_e^tr = D_a^tr), the rest its validation set (D_e^val = D_a^val); each is its own stream.
Sources may list their examples class by class (image folders do), so every subset — the
`max_examples` / `test_examples` truncations and both halves of the split — is taken from one
seeded, class-stratified order (`stratified_order`): any prefix of it holds every class within
±1 of its proportional count.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import os
from typing import Callable, Sequence

import grain
import numpy as np

from lease_jax import errors

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.ppm')
SOURCES = ('packaged', 'image_folder', 'tfds')


DataError = errors.DataError  # this module's error (lease_jax.errors), by its old name


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """What a model needs to know about a dataset."""

  name: str
  num_classes: int
  image_shape: tuple[int, int, int]  # H, W, C of the images a model sees
  mean: tuple[float, ...]  # per channel, pixel values in [0, 1]
  std: tuple[float, ...]


# Per-channel statistics (pixels in [0, 1]); DARTS's CIFAR-10 values.
KNOWN = {
    'cifar10': (10, (32, 32, 3), (0.49139968, 0.48215827, 0.44653124),
                (0.24703233, 0.24348505, 0.26158768)),
    'cifar100': (100, (32, 32, 3), (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    'imagenet2012': (1000, (224, 224, 3), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}


# ---------------------------------------------------------------------------------------------
# Sources.


class ArraySource:
  """Images and labels held in memory.

  Every source has `labels` (int32 [N], read without decoding images): the stratified split needs
  them.
  """

  def __init__(self, images: np.ndarray, labels: np.ndarray):
    self.images, self.labels = images, labels.astype(np.int32)

  def __len__(self):
    return len(self.labels)

  def __getitem__(self, i):
    return self.images[i], self.labels[i]


class ImageFolderSource:
  """`root/<class>/*.jpg|png`, decoded on access (Pillow); labels = sorted class folders."""

  def __init__(self, root: str, classes: Sequence[str] | None = None, mode: str = 'RGB'):
    if not os.path.isdir(root):
      raise DataError(f'image folder {root!r} does not exist (expected root/{{train,test}}/'
                      f'<class>/*.jpg|png)')
    found = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    self.classes = list(classes) if classes is not None else found
    if not self.classes:
      raise DataError(f'image folder {root!r} has no class subfolders')
    missing = sorted(set(self.classes) - set(found))
    if missing:
      raise DataError(f'image folder {root!r} lacks class folders {missing}')
    self.files, labels = [], []
    for label, name in enumerate(self.classes):
      folder = os.path.join(root, name)
      files = sorted(f for f in os.listdir(folder) if f.lower().endswith(IMAGE_EXTENSIONS))
      self.files += [os.path.join(folder, f) for f in files]
      labels += [label] * len(files)
    if not self.files:
      raise DataError(f'image folder {root!r} holds no images ({", ".join(IMAGE_EXTENSIONS)})')
    self.labels = np.asarray(labels, np.int32)
    empty = [name for k, name in enumerate(self.classes) if not np.any(self.labels == k)]
    if empty:
      raise DataError(f'image folder {root!r}: class folders {empty} hold no images '
                      f'({", ".join(IMAGE_EXTENSIONS)}); add images or remove the folders')
    if len(self.classes) < 2:
      raise DataError(f'image folder {root!r} has one class ({self.classes[0]!r}); a '
                      f'classifier needs at least two class folders')
    self.mode = mode

  def __len__(self):
    return len(self.files)

  def check_same_size(self, indices: np.ndarray) -> None:
    """Refuses images of different sizes among `indices` before anything is compiled (reads only
    each file's header: ~0.3 ms an image), naming the first image and one that differs."""
    from PIL import Image
    first = None
    for i in np.sort(np.asarray(indices)):
      path = self.files[int(i)]
      try:
        with Image.open(path) as image:
          size = image.size
      except OSError as e:
        raise DataError(f'cannot decode image {path!r}: {e}') from None
      if first is None:
        first = (path, size)
      elif size != first[1]:
        raise DataError(f'images of different sizes: {first[0]!r} is {first[1][0]}x{first[1][1]}, '
                        f'{path!r} is {size[0]}x{size[1]}; resize them to one size (only the '
                        f'imagenet2012 transforms resize)')

  def __getitem__(self, i):
    from PIL import Image
    path = self.files[i]
    try:
      with Image.open(path) as image:
        if image.mode in SIXTEEN_BIT_MODES:
          array = sixteen_to_eight_bits(np.asarray(image), self.mode)
        elif image.mode == 'F':
          raise DataError(f'image {path!r} holds floating-point pixels (mode F); convert it to '
                          f'8- or 16-bit integers')
        else:
          array = np.asarray(image.convert(self.mode))
    except OSError as e:
      raise DataError(f'cannot decode image {path!r}: {e}') from None
    return (array[..., None] if array.ndim == 2 else array), self.labels[i]


# 16-bit grayscale (PNG, TIFF): Pillow's `convert` clips them to 0..255, so they are scaled here.
SIXTEEN_BIT_MODES = ('I;16', 'I;16L', 'I;16B', 'I;16N', 'I')


def sixteen_to_eight_bits(pixels: np.ndarray, mode: str) -> np.ndarray:
  """A 16-bit grayscale image (0..65535) as 8 bits (0..255: divided by 257 and rounded, so that
  65535 is 255), with three equal channels for `mode` 'RGB'."""
  pixels = np.asarray(pixels, np.int64)
  if pixels.min() < 0 or pixels.max() > 65535:
    raise DataError(f'a 32-bit image with values {pixels.min()}..{pixels.max()}: only 8- and '
                    f'16-bit images are read')
  gray = np.rint(pixels / 257.0).astype(np.uint8)
  return np.stack([gray] * 3, axis=-1) if mode == 'RGB' else gray


class TfdsSource:
  """A tfds split through `tfds.data_source` (random access, no TensorFlow)."""

  def __init__(self, name: str, split: str, data_dir: str | None):
    import tensorflow_datasets as tfds
    self.name, self.split, self.data_dir = name, split, data_dir
    try:
      self.source = tfds.data_source(name, split=split, data_dir=data_dir or None,
                                     download=False)
    except Exception as e:  # tfds raises many types for a missing or unprepared dataset
      where = data_dir or '~/tensorflow_datasets'
      raise DataError(
          f'tfds dataset {name!r} split {split!r} is not prepared (array_record) in {where}: '
          f'{type(e).__name__}: {str(e).splitlines()[0][:200]}. Prepare it on a machine with '
          f'TensorFlow (tfds build {name} --file_format=array_record) or use source='
          f'"image_folder"') from None

  def __len__(self):
    return len(self.source)

  @functools.cached_property
  def labels(self) -> np.ndarray:
    """Every example's label, read with the images left encoded (fast even for ImageNet)."""
    import tensorflow_datasets as tfds
    read = lambda source: np.asarray([int(source[i]['label']) for i in range(len(source))],
                                     np.int32)
    try:
      return read(tfds.data_source(self.name, split=self.split, data_dir=self.data_dir or None,
                                   download=False,
                                   decoders={'image': tfds.decode.SkipDecoding()}))
    except Exception:  # noqa: BLE001 - skipping decoding can need TensorFlow: decode instead
      return read(self.source)

  def __getitem__(self, i):
    record = self.source[i]
    image = np.asarray(record['image'])
    return (image[..., None] if image.ndim == 2 else image), np.int32(record['label'])


def _digits() -> tuple[ArraySource, ArraySource]:
  from sklearn.datasets import load_digits
  from sklearn.model_selection import train_test_split
  digits = load_digits()
  images = np.round(digits.images * (255 / 16)).astype(np.uint8)[..., None]  # 0..16 -> 0..255
  train_x, test_x, train_y, test_y = train_test_split(
      images, digits.target, test_size=0.2, random_state=0, stratify=digits.target)
  return ArraySource(train_x, train_y), ArraySource(test_x, test_y)


def load_sources(config) -> tuple[DatasetInfo, object, object]:
  """(info, train source, test source) from a `config.data` block.

  Fields: `source` ('packaged' | 'image_folder' | 'tfds'), `name`, `data_dir`.
  """
  source, name = config.source, config.name
  data_dir = os.path.expanduser(config.get('data_dir', '') or '')  # a `~` the shell left
  if source not in SOURCES:
    raise DataError(f'data.source {source!r}; accepted: {", ".join(SOURCES)}')
  if source == 'packaged':
    if name != 'digits':
      raise DataError(f'data.name {name!r} with source "packaged"; the packaged dataset is '
                      f'"digits" (use source "tfds" or "image_folder" for {name!r})')
    train, test = _digits()
    pixels = train.images.astype(np.float64) / 255
    info = DatasetInfo('digits', 10, train.images.shape[1:],
                       (float(pixels.mean()),), (float(pixels.std()),))
    return info, train, test
  if source == 'image_folder':
    if not data_dir:
      raise DataError('data.data_dir must name the image folder root (holding train/ and test/)')
    train = ImageFolderSource(os.path.join(data_dir, 'train'))
    test_dir = os.path.join(data_dir, 'test')
    test = ImageFolderSource(test_dir, train.classes) if os.path.isdir(test_dir) else None
    sample = train[0][0]
    named_by_folder = name == 'digits'  # the packaged default's name: name the folder instead
    if named_by_folder:
      name = os.path.basename(os.path.normpath(data_dir))
    # A folder that only shares a known set's name (3 classes in `cifar10/`) has its own classes.
    own_classes = named_by_folder and name in KNOWN and len(train.classes) != KNOWN[name][0]
    if name in KNOWN and not own_classes:
      num_classes, shape, mean, std = KNOWN[name]
      if len(train.classes) != num_classes:
        raise DataError(f'{data_dir!r} has {len(train.classes)} class folders, but data.name '
                        f'{name!r} has {num_classes} classes; set data.name to another name '
                        f'(e.g. the folder\'s) to search the folder\'s own classes')
      shape = shape if name == 'imagenet2012' else sample.shape
    else:
      mean, std = _channel_stats(train)
      num_classes, shape = len(train.classes), sample.shape
    return DatasetInfo(name, num_classes, tuple(shape), tuple(mean), tuple(std)), train, test
  if name not in KNOWN:
    raise DataError(f'data.name {name!r} with source "tfds"; accepted: {", ".join(KNOWN)}')
  num_classes, shape, mean, std = KNOWN[name]
  test_split = 'validation' if name == 'imagenet2012' else 'test'
  train = TfdsSource(name, 'train', data_dir)
  test = TfdsSource(name, test_split, data_dir)
  return DatasetInfo(name, num_classes, shape, mean, std), train, test


def _channel_stats(source, limit: int = 2000):
  rng = np.random.default_rng(0)
  picks = rng.choice(len(source), min(limit, len(source)), replace=False)
  pixels = np.concatenate([source[int(i)][0].reshape(-1, source[0][0].shape[-1])
                           for i in picks]).astype(np.float64) / 255
  return tuple(pixels.mean(0)), tuple(np.maximum(pixels.std(0), 1e-3))


# ---------------------------------------------------------------------------------------------
# Augmentation (numpy, one example at a time).


def random_crop_flip(image: np.ndarray, rng: np.random.Generator, padding: int,
                     flip: bool) -> np.ndarray:
  """`RandomCrop(size, padding)` (zero padding) and `RandomHorizontalFlip()`."""
  h, w = image.shape[:2]
  if padding:
    image = np.pad(image, ((padding, padding), (padding, padding), (0, 0)))
    top, left = rng.integers(0, 2 * padding + 1, size=2)
    image = image[top:top + h, left:left + w]
  if flip and rng.random() < 0.5:
    image = image[:, ::-1]
  return image


def cutout(image: np.ndarray, rng: np.random.Generator, length: int) -> np.ndarray:
  """DARTS's `Cutout`: zero a length x length square (clipped) centred uniformly at random."""
  h, w = image.shape[:2]
  y, x = rng.integers(0, h), rng.integers(0, w)
  image = image.copy()
  image[max(0, y - length // 2):min(h, y + length // 2),
        max(0, x - length // 2):min(w, x + length // 2)] = 0
  return image


def imagenet_train(image: np.ndarray, rng: np.random.Generator, size: int = 224) -> np.ndarray:
  """`RandomResizedCrop(size)`, `RandomHorizontalFlip()`, `ColorJitter(0.4, 0.4, 0.4, 0.2)`."""
  from PIL import Image, ImageEnhance
  h, w = image.shape[:2]
  for _ in range(10):
    area = h * w * rng.uniform(0.08, 1.0)
    ratio = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
    cw, ch = int(round(np.sqrt(area * ratio))), int(round(np.sqrt(area / ratio)))
    if 0 < cw <= w and 0 < ch <= h:
      top, left = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
      break
  else:
    ch = cw = min(h, w)
    top, left = (h - ch) // 2, (w - cw) // 2
  pil = Image.fromarray(image[top:top + ch, left:left + cw]).resize((size, size), Image.BILINEAR)
  if rng.random() < 0.5:
    pil = pil.transpose(Image.FLIP_LEFT_RIGHT)
  for enhance in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
    pil = enhance(pil).enhance(rng.uniform(0.6, 1.4))
  hsv = np.asarray(pil.convert('HSV')).copy()
  hsv[..., 0] = (hsv[..., 0].astype(np.int32) + int(rng.uniform(-0.2, 0.2) * 255)) % 256
  return np.asarray(Image.fromarray(hsv, 'HSV').convert('RGB'))


def imagenet_eval(image: np.ndarray, size: int = 224) -> np.ndarray:
  """`Resize(256)`, `CenterCrop(224)`."""
  from PIL import Image
  h, w = image.shape[:2]
  scale = 256 / min(h, w)
  pil = Image.fromarray(image).resize((max(size, round(w * scale)), max(size, round(h * scale))),
                                      Image.BILINEAR)
  w2, h2 = pil.size
  left, top = (w2 - size) // 2, (h2 - size) // 2
  return np.asarray(pil.crop((left, top, left + size, top + size)))


@dataclasses.dataclass(frozen=True)
class Transform:
  """How a stream turns a uint8 image into a normalised float32 one.

  kind: 'none', 'crop' (random crop with zero padding), 'crop_flip' (+ horizontal flip),
    'imagenet_train' (random resized crop, flip, colour jitter), 'imagenet_eval' (resize + centre
    crop).
  """

  kind: str
  mean: tuple[float, ...]
  std: tuple[float, ...]
  padding: int = 4
  cutout: int = 0

  KINDS = ('none', 'crop', 'crop_flip', 'imagenet_train', 'imagenet_eval')

  def __post_init__(self):
    if self.kind not in self.KINDS:
      raise DataError(f'augmentation {self.kind!r}; accepted: {", ".join(self.KINDS)}')

  def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if self.kind in ('crop', 'crop_flip'):
      image = random_crop_flip(image, rng, self.padding, self.kind == 'crop_flip')
    elif self.kind == 'imagenet_train':
      image = imagenet_train(image, rng)
    elif self.kind == 'imagenet_eval':
      image = imagenet_eval(image)
    out = (image.astype(np.float32) / 255 - np.float32(self.mean)) / np.float32(self.std)
    return cutout(out, rng, self.cutout) if self.cutout else out


# ---------------------------------------------------------------------------------------------
# Streams.


class BatchStream:
  """Batches of a set of examples, reshuffled every epoch; batch k is a pure function of k.

  Args:
    source: random-access examples.
    indices: which examples of `source` this stream draws from.
    batch_size: the global batch size.
    seed: the stream's seed (order and augmentation).
    transform: the per-example transform.
    shuffle: reshuffle every epoch (training); otherwise the original order, with the last
      partial batch padded and masked (evaluation).
    keep_partial: (training) end each epoch with its partial batch, as DARTS's `train.py` gets
      from PyTorch's DataLoader (no `drop_last`): as many of its rows as make a multiple of
      `multiple` (the devices it is split over); a remainder below `multiple` is dropped. Without
      it each epoch drops its last `len(indices) % batch_size` examples (a different set each
      epoch).
    multiple: see `keep_partial`.
  """

  def __init__(self, source, indices: np.ndarray, batch_size: int, seed: int,
               transform: Transform, shuffle: bool = True, workers: int = 0,
               keep_partial: bool = False, multiple: int = 1):
    if batch_size < 1:
      raise DataError(f'batch size must be >= 1, got {batch_size}')
    if shuffle and len(indices) < batch_size:
      raise DataError(f'a stream of {len(indices)} examples cannot fill a batch of '
                      f'{batch_size}; lower the batch size or use more data')
    self.source, self.indices = source, np.asarray(indices)
    if isinstance(source, ImageFolderSource) and not transform.kind.startswith('imagenet'):
      source.check_same_size(self.indices)
    self.batch_size, self.seed, self.transform, self.shuffle = batch_size, seed, transform, shuffle
    ds = grain.MapDataset.source(self.indices)
    remainder = len(self.indices) % batch_size
    self.partial_rows = remainder - remainder % multiple if shuffle and keep_partial else 0
    if shuffle and self.partial_rows:
      self._order = ds.shuffle(seed=seed).batch(batch_size, drop_remainder=False).repeat(None)
      self.steps_per_epoch = len(self.indices) // batch_size + 1
    elif shuffle:
      self._order = ds.shuffle(seed=seed).batch(batch_size, drop_remainder=True).repeat(None)
      self.steps_per_epoch = len(self.indices) // batch_size
    else:
      self._order = ds.batch(batch_size, drop_remainder=False)
      self.steps_per_epoch = len(self._order)
    self._pool = concurrent.futures.ThreadPoolExecutor(workers) if workers > 1 else None

  def global_indices(self, step: int) -> np.ndarray:
    return np.asarray(self._order[step])

  def batch(self, step: int, process_index: int = 0, process_count: int = 1) -> dict:
    """The rows of global batch `step` that belong to this process (contiguous blocks).

    Returns `{'image': float32 [b, H, W, C], 'label': int32 [b], 'mask': float32 [b]}`; `mask`
    is 0 on the padding rows of a final partial evaluation batch.
    """
    if self.batch_size % process_count:
      raise DataError(f'batch size {self.batch_size} does not split over {process_count} '
                      f'processes')
    chosen = self.global_indices(step)
    if self.shuffle and len(chosen) < self.batch_size:  # an epoch's kept partial batch
      chosen = chosen[:self.partial_rows]
    valid = len(chosen)
    if valid < self.batch_size and not self.shuffle:
      # The final evaluation batch, padded to full size by repeating its first example (masked).
      chosen = np.concatenate([chosen, np.repeat(chosen[:1], self.batch_size - valid)])
    per = len(chosen) // process_count
    rows = range(process_index * per, (process_index + 1) * per)

    def load(row):
      image, label = self.source[int(chosen[row])]
      rng = np.random.default_rng([self.seed, step, row])
      return self.transform(np.asarray(image), rng), label

    loaded = list(self._pool.map(load, rows) if self._pool else map(load, rows))
    return {'image': np.stack([x for x, _ in loaded]).astype(np.float32),
            'label': np.asarray([y for _, y in loaded], np.int32),
            'mask': np.asarray([1.0 if r < valid else 0.0 for r in rows], np.float32)}


def stratified_order(labels: np.ndarray, seed: int) -> np.ndarray:
  """A seeded permutation of `range(len(labels))` whose every prefix is class-balanced.

  Each class's examples are shuffled (seeded), then the classes are interleaved by the position
  of each example within its class, `(k + 1/2) / n_c`, so the first m examples of the order hold
  `m · n_c / N ± 1` of class c, whatever order the source lists them in.
  """
  labels = np.asarray(labels)
  rng = np.random.default_rng(seed)
  groups = [rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)]
  return _interleave(groups)


def _interleave(groups: Sequence[np.ndarray]) -> np.ndarray:
  if not groups:
    return np.zeros((0,), np.int64)
  position = np.concatenate([(np.arange(len(g)) + 0.5) / len(g) for g in groups])
  group = np.concatenate([np.full(len(g), i) for i, g in enumerate(groups)])
  return np.concatenate(groups)[np.lexsort((group, position))]


def balanced_subset(labels: np.ndarray, seed: int, limit: int = -1) -> np.ndarray:
  """The first `limit` examples (-1: all) of `stratified_order`, re-interleaved so that any
  prefix of the subset is class-balanced too (the search split takes one)."""
  order = stratified_order(labels, seed)
  if limit is None or limit < 0 or limit >= len(order):
    return order
  chosen = order[:limit]
  labels = np.asarray(labels)
  # Within a class the order keeps its shuffled sequence, so regrouping and interleaving again
  # gives a balanced order of the subset.
  return _interleave([chosen[labels[chosen] == c] for c in np.unique(labels[chosen])])


def search_split(labels: np.ndarray, train_portion: float, seed: int,
                 limit: int = -1) -> tuple[np.ndarray, np.ndarray]:
  """DARTS's split of the training set into the search's train and val halves, class-balanced.

  Args:
    labels: every training example's label (the source's `labels`).
    train_portion: the train half's share (DARTS: 0.5).
    seed: the split's seed (`data.split_seed`): the split is a pure function of it and the
      labels, identical in every process and on resume.
    limit: use only `limit` examples (`data.max_examples`; -1: all), a class-balanced subset.

  Returns:
    (train indices, val indices) into the source; each half holds every class within ±1 of its
    proportional count.
  """
  if not 0 < train_portion < 1:
    raise DataError(f'data.train_portion must be in (0, 1), got {train_portion}')
  order = balanced_subset(labels, seed, limit)
  split = int(np.floor(train_portion * len(order)))
  if split == 0 or split == len(order):
    raise DataError(f'train_portion {train_portion} leaves an empty split of {len(order)}')
  return order[:split], order[split:]


def class_counts(labels: np.ndarray, indices: np.ndarray, num_classes: int) -> list[int]:
  """How many of `indices` each class holds (logged for every search split)."""
  return np.bincount(np.asarray(labels)[indices], minlength=num_classes).tolist()


class Prefetcher:
  """Loads the next batches on a background thread while the current step runs."""

  def __init__(self, fetch: Callable[[int], dict], start: int, depth: int = 2):
    self._fetch, self._next, self._depth = fetch, start, depth
    self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix='prefetch')
    self._queue = [self._pool.submit(fetch, start + i) for i in range(depth)]

  def get(self, step: int) -> dict:
    if step != self._next:  # out of order (a resume): restart the queue
      for future in self._queue:
        future.cancel()
      self._queue = [self._pool.submit(self._fetch, step + i) for i in range(self._depth)]
      self._next = step
    future = self._queue.pop(0)
    self._queue.append(self._pool.submit(self._fetch, step + self._depth))
    self._next += 1
    return future.result()

  def close(self):
    self._pool.shutdown(wait=False, cancel_futures=True)
