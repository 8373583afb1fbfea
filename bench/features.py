"""Feature extraction and heads: dogcls.features.FeatureStore against the embedding path dedup used before it
(`dedup.model_embeddings`: float32, contiguous layout, decoding on the calling thread) on the same images; and at the
competition's size (bench/scale.py's 25,000-image set), the extraction of EfficientNet-Lite0 at 224 px (time, peak
memory) and head training for 500 classes x 5 folds.

    .venv/bin/python bench/features.py [--images 600] [--arch efficientnet_lite0]
    .venv/bin/python bench/features.py --scale     # bench/scale.py's set: build it first (bench/scale.py --build-only)
    .venv/bin/python bench/features.py --smoke     # seconds: 24 images at 96 px, a head on them

Each extraction writes into a store of its own (a temporary folder), so each computes everything. Run it alone on the
machine: other jobs share the cores and the times mean nothing then.
"""
import argparse
import resource
import statistics
import sys
import tempfile
import time

import numpy as np
import torch

from dogcls.config import ModelConfig
from dogcls.core import cache_dir, default_data_dir
from dogcls.data import assign_folds, load_data
from dogcls.dedup import model_embeddings
from dogcls.features import FeatureStore
from dogcls.heads import fit_head
from dogcls.models import create_model, eval_transform

VIEWS = ('none', 'h')


def peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def same_images(arch: str, size: str, n: int):
    "images/s of the former embedding path and of the store (float32, and its automatic precision) on the same files."
    manifest, _ = load_data(default_data_dir(), decode=False)
    rows = manifest.head(n)
    model = create_model(arch, 0, size)
    print(f'{len(rows)} embedded images, {arch} at {model.dogcls.img_size} px, views {VIEWS}, {torch.get_num_threads()} torch threads')
    start = time.perf_counter()
    before = model_embeddings(rows.file, model, eval_transform(model), VIEWS, device='cpu')
    base = time.perf_counter() - start
    print(f'  dedup.model_embeddings (the former path): {base:.1f} s, {len(rows) / base:.1f} images/s')
    for precision in ('fp32', 'auto'):
        with tempfile.TemporaryDirectory() as root:
            store = FeatureStore(create_model(arch, 0, size), precision, root=root)
            done = store.extract(rows.file, rows.sha1, VIEWS)
            start = time.perf_counter(); stored = store.load(rows.sha1, VIEWS).astype(np.float32); read = time.perf_counter() - start
        unit = stored / np.linalg.norm(stored, axis=-1, keepdims=True)
        cosine = (unit * before).sum(-1)
        print(f'  FeatureStore {store.spec.precision}: {done.seconds:.1f} s, {done.images_per_second:.1f} images/s '
              f'({base / done.seconds:.2f}x the former path); read back in {read:.2f} s; cosine to the former features: '
              f'min {cosine.min():.4f}, median {np.median(cosine):.5f}')


def heads(features: np.ndarray, targets: np.ndarray, folds: np.ndarray, classes: int, config: ModelConfig, epochs: int, label: str):
    "Head training per fold on stored features: seconds per fold."
    seconds = []
    for k in sorted(set(folds)):
        fit, val = folds != k, folds == k
        start = time.perf_counter()
        fit_head(features[fit], targets[fit], classes, config, epochs, 32, k, features[val, 0], targets[val])
        seconds.append(time.perf_counter() - start)
    print(f'  heads ({label}, {epochs} epochs, batch 32), {len(seconds)} folds of {classes} classes, about {int((folds != 0).sum())} '
          f'training images each: {sum(seconds):.1f} s in all, median {statistics.median(seconds):.1f} s a fold')


def scale(arch: str):
    folder = cache_dir()/'scale-v1-500'
    if not folder.is_dir(): sys.exit(f'{folder}: build it first with .venv/bin/python bench/scale.py --build-only')
    manifest, _ = load_data(folder, decode=False)
    train, test = manifest[manifest.split == 'train'], manifest[manifest.split == 'test']
    print(f'scale set: {len(train)} training and {len(test)} test images, {train.class_name.nunique()} classes; peak memory before: {peak_gib():.2f} GiB')
    with tempfile.TemporaryDirectory() as root:
        store = FeatureStore(create_model(arch, 0, 'full'), root=root)
        start = time.perf_counter()
        a = store.extract(train.file, train.sha1, VIEWS)
        b = store.extract(test.file, test.sha1, ('none',))
        seconds = time.perf_counter() - start
        print(f'  extraction, {arch} at {store.spec.img_size} px, {store.spec.precision}: {seconds:.0f} s for {a.images} training images x 2 views '
              f'and {b.images} test images x 1 ({(a.images + b.images) / seconds:.1f} images/s); peak memory {peak_gib():.2f} GiB')
        features = store.load(train.sha1, VIEWS)
        print(f'  stored features of the training images: {features.nbytes / 2**20:.0f} MiB in memory; peak memory {peak_gib():.2f} GiB')
    m = assign_folds(train, 5, 42)
    targets, folds = m.target.to_numpy(), m.fold.to_numpy()
    classes = int(manifest.target.max()) + 1
    heads(features, targets, folds, classes, ModelConfig(), 15, 'linear')
    heads(features, targets, folds, classes, ModelConfig(head='mlp', head_dropout=0.3), 15, 'mlp 1024')
    print(f'peak memory: {peak_gib():.2f} GiB')


def smoke():
    manifest, _ = load_data(default_data_dir(), decode=False)
    rows = manifest[manifest.split == 'train'].head(24)
    with tempfile.TemporaryDirectory() as root:
        store = FeatureStore(create_model('efficientnet_lite0', 0, 'cpu'), root=root)
        done = store.extract(rows.file, rows.sha1, VIEWS)
        features = store.load(rows.sha1, VIEWS)
    print(f'smoke: {done.images} images x 2 views at 96 px in {done.seconds:.1f} s; features {features.shape}')
    heads(features, np.arange(24) % 3, np.arange(24) % 2, 3, ModelConfig(head='mlp', head_hidden=32), 2, 'mlp 32')


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--images', type=int, default=600)
    parser.add_argument('--arch', default='efficientnet_lite0')
    parser.add_argument('--size', default='full')
    parser.add_argument('--scale', action='store_true', help="bench/scale.py's 25,000-image set: extraction at 224 px, heads for 500 classes x 5 folds")
    parser.add_argument('--smoke', action='store_true', help='seconds: 24 images at 96 px and a tiny head; the figures mean nothing')
    args = parser.parse_args()
    if args.smoke: return smoke()
    if args.scale: return scale(args.arch)
    same_images(args.arch, args.size, args.images)


if __name__ == '__main__': main()
