"""Offline augmentation throughput: copies written per second by `write_offline` over the embedded training set
(128-px images, one copy per image for each of the five transforms), with one worker thread and with one per core,
into a folder on disk and, where the machine has one, into memory (/dev/shm) to separate compute from file creation.

    .venv/bin/python bench/augment.py [--repeats 3] [--dirs /tmp /dev/shm] [--smoke]
"""
import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from dogcls.augment import write_offline
from dogcls.data import load_data

SPECS = ['canny', 'morphology', 'noise', 'blur', 'motion_blur']


def run(manifest, threads: int, where: str) -> float:
    with tempfile.TemporaryDirectory(dir=where) as d:
        start = time.perf_counter()
        copies = write_offline(manifest, Path(d)/'aug', SPECS, n_threads=threads)
        return len(copies) / (time.perf_counter() - start)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--repeats', type=int, default=3)
    p.add_argument('--dirs', nargs='+', default=[tempfile.gettempdir()] + (['/dev/shm'] if os.path.isdir('/dev/shm') else []))
    p.add_argument('--smoke', action='store_true', help='seconds on a slice of the embedded set: checks the script runs; its figures mean nothing')
    args = p.parse_args()
    manifest, _ = load_data()
    if args.smoke: args.repeats, args.dirs, manifest = 1, args.dirs[:1], manifest.head(12)
    n = (manifest.split == 'train').sum()
    cores = os.cpu_count()
    print(f'{n} training images x {len(SPECS)} transforms = {n * len(SPECS)} copies (decode, transform, PNG encode, write, hash)')
    for where in args.dirs:
        rates = {t: [] for t in (1, cores)}
        for _ in range(args.repeats): # interleaved, so that drift of a noisy machine hits both alike
            for t in rates: rates[t].append(run(manifest, t, where))
        one, all_ = statistics.median(rates[1]), statistics.median(rates[cores])
        print(f'into {where}: 1 thread {one:6.0f} copies/s, {cores} threads {all_:6.0f} copies/s '
              f'(medians of {args.repeats}); {cores} threads / 1 thread: {all_ / one:.2f}x')


if __name__ == '__main__':
    main()
