"""Loader benchmark: images/s of the data layer over the embedded clipart set, first epoch (decoding from disk
into the cache) against later epochs (served from the cache), and an uncached epoch as the baseline.

    .venv/bin/python bench/loader.py [--repeats 3] [--img_size 128] [--batch_size 64] [--smoke]
"""
import argparse
import statistics
import time

import torch
from torch.utils.data import DataLoader
from torchvision import transforms as T

from dogcls.data import load_data
from dogcls.loader import ImageCache, ImageDataset, cache_side


def epoch(loader) -> float:
    "Seconds to draw every batch of one epoch."
    start = time.perf_counter()
    for _ in loader: pass
    return time.perf_counter() - start


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--repeats', type=int, default=3)
    p.add_argument('--img_size', type=int, default=128)
    p.add_argument('--batch_size', type=int, default=64)
    p.add_argument('--smoke', action='store_true', help='seconds on a slice of the embedded set: checks the script runs; its figures mean nothing')
    args = p.parse_args()
    torch.set_num_threads(1)
    manifest, _ = load_data()
    if args.smoke: args.repeats, manifest = 1, manifest.head(64)
    transform = T.Compose([T.Resize((args.img_size, args.img_size)), T.ToTensor()])
    n = len(manifest)
    first, later, uncached = [], [], []
    for _ in range(args.repeats):
        cache = ImageCache(budget_mb=1024)
        loader = DataLoader(ImageDataset(manifest, transform, cache, max_side=cache_side(args.img_size)), batch_size=args.batch_size)
        first.append(n / epoch(loader))
        later.append(statistics.median(n / epoch(loader) for _ in range(3)))
        plain = DataLoader(ImageDataset(manifest, transform, None, max_side=cache_side(args.img_size)), batch_size=args.batch_size)
        uncached.append(n / epoch(plain))
    print(f'images: {n}, image size {args.img_size}, batch {args.batch_size}, main process, {args.repeats} repeats (medians)')
    print(f'first epoch (decode + fill cache): {statistics.median(first):8.0f} images/s')
    print(f'later epochs (cached):             {statistics.median(later):8.0f} images/s')
    print(f'no cache (decode every epoch):     {statistics.median(uncached):8.0f} images/s')
    print(f'cached / uncached:                 {statistics.median(later) / statistics.median(uncached):8.2f}x')
    print(f'cache: {cache}')


if __name__ == '__main__':
    main()
