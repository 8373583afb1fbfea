"""Offline augmentation throughput: copies written per second by `write_offline` over the embedded training set
(128-px images, one copy per image for each of the five transforms), with one thread and with one per core.

    .venv/bin/python bench/augment.py [--repeats 3]
"""
import argparse, os, statistics, tempfile, time
from pathlib import Path

from dogcls.augment import write_offline
from dogcls.data import load_data

SPECS = ['canny', 'morphology', 'noise', 'blur', 'motion_blur']


def run(manifest, threads: int) -> float:
    with tempfile.TemporaryDirectory() as d:
        start = time.perf_counter()
        copies = write_offline(manifest, Path(d)/'aug', SPECS, n_threads=threads)
        return len(copies) / (time.perf_counter() - start)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--repeats', type=int, default=3)
    args = p.parse_args()
    manifest, _ = load_data()
    n = (manifest.split == 'train').sum()
    cores = os.cpu_count()
    results = {t: statistics.median(run(manifest, t) for _ in range(args.repeats)) for t in (1, cores)}
    print(f'{n} training images x {len(SPECS)} transforms = {n * len(SPECS)} copies (decode, transform, PNG encode, write, hash)')
    for t, rate in results.items(): print(f'{t} thread(s): {rate:7.0f} copies/s (median of {args.repeats})')
    print(f'{cores} threads / 1 thread: {results[cores] / results[1]:.2f}x')


if __name__ == '__main__':
    main()
