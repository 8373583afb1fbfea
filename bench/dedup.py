"""Near-duplicate benchmarks: a held-apart icon benchmark (the defaults are chosen on it) and the embedded clipart one,
both built by bench/dedup_sets.py; this script scores and times.

1. Icon benchmark, built at run time from Debian's `oxygen-icon-theme` (apt-get install oxygen-icon-theme; nothing is
   committed): one PNG per icon name (128 px, else 64/48/256), files whose pixels equal an earlier one's (mean absolute
   difference < 0.02 at 32 px) left out. Known copies of some icons: mirror (h, v), rotation by 90 degrees, resize,
   JPEG, brightness, crop of 60-90 % of the side, shift by 5-15 %, mild recolouring (hue +-12 degrees, saturation
   x0.75-1.25), overlaid text, the same pixels filed under another class, and a CMYK JPEG. Hard negatives, labelled
   distinct: icons that are mirror images or rotations of each other, colour variants (folder-red, folder-blue...),
   other icons of one name family (same object, different drawing), and strong recolourings (hue rotated by 120-240
   degrees). Precision counts every linked pair that is not a known copy; "without orientation variants" leaves out
   links between icons that are mirror images or rotations of each other, or between their copies (a flip- and
   rotation-tolerant search must link them; use views='none' for such data).
2. The embedded clipart benchmark of the first release (distinct originals and known copies), for comparison.
3. imagededup's PHash (and its CNN, which needs downloaded weights) on the icon benchmark.
4. Time of `find_duplicates` with the defaults on the embedded set and (--scale) on bench/scale.py's 15,000-image set,
   with the share of the geometric check; SSIM against scikit-image; cosine search memory.
5. Crops and shifts of embedded images beyond the clipart benchmark's 50 (its transform, other seeds): how many the
   geometric check alone confirms (`_either_way`, as `find_duplicates` runs it).
6. The geometric path's Hamming searches: faiss (`_hamming_nearest`) against OpenCV's `batchDistance`, on the embedded
   set's ORB descriptors, a thread and two threads, with the same distances and nearest rows.

    .venv/bin/python bench/dedup.py [--icons /usr/share/icons/oxygen/base] [--per_kind 40] [--scale] [--skip_old] [--skip_skimage] [--skip_search]
    .venv/bin/python bench/dedup.py --smoke   # seconds: the clipart benchmark with 12 sources, one timing on 300 images,
                                              # 20 crop copies, the Hamming searches on 60 images
"""
import argparse
import itertools
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch

from dogcls.data import load_data, open_image
from dogcls.dedup import (
    DedupConfig,
    SSIMIndex,
    decode_all,
    find_duplicates,
    geometric_check,
    thumbnails,
    to_grey,
    within_class_ssim,
)
from dogcls.dedup.local import _angles, _hamming_nearest
from dogcls.dedup.pipeline import _either_way
from dogcls.views import FLIPS

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dedup_sets import (  # the benchmark sets (built at run time)
    ICONS,
    TRANSFORMS,
    build,
    build_benchmark,
    icon_manifest,
    make_copy,
)


def evaluate(predicted: set, truth: list, bench: pd.DataFrame) -> dict:
    "Pair-level precision overall, recall per transform (and precision of pairs that involve each transform's copies)."
    true_pairs = {frozenset((s, c)): t for s, c, t in truth}
    copy_transform = {c: t for _, c, t in truth}
    out = {}
    for t in TRANSFORMS:
        wanted = [p for p, tt in true_pairs.items() if tt == t]
        involving = [p for p in predicted if any(copy_transform.get(x) == t for x in p)]
        out[t] = (sum(p in predicted for p in wanted) / max(1, len(wanted)),
                  sum(p in true_pairs for p in involving) / max(1, len(involving)), len(wanted))
    tp = sum(p in true_pairs for p in predicted)
    out['overall'] = (tp / len(true_pairs), tp / max(1, len(predicted)), len(true_pairs))
    return out


def print_table(title: str, results: dict):
    print(f'\n{title}')
    print(f'{"transform":<12} {"n":>4} {"recall":>7} {"precision":>9}')
    for t, (recall, precision, n) in results.items(): print(f'{t:<12} {n:>4} {recall:>7.3f} {precision:>9.3f}')


def phash_pairs(flat: Path, distance: int) -> set:
    from imagededup.methods import PHash
    found = PHash(verbose=False).find_duplicates(image_dir=str(flat), max_distance_threshold=distance, num_enc_workers=1, num_dist_workers=1)
    return {frozenset((a, b)) for a, dups in found.items() for b in dups}


def ssim_speed(repeats: int = 3):
    from skimage.metrics import structural_similarity
    manifest, _ = load_data()
    train = manifest[manifest.split == 'train'].reset_index(drop=True)
    gray = to_grey(thumbnails(train.file)[0])
    pairs = [(i, j) for _, rows in train.groupby('class_name').groups.items() for i, j in itertools.combinations(sorted(rows), 2)]
    ours_times = []
    for _ in range(repeats):
        start = time.perf_counter(); ours = within_class_ssim(train, threshold=0.0, grey=gray); ours_times.append(time.perf_counter() - start)
    start = time.perf_counter()
    reference = {}
    for i, j in pairs:
        reference[(i, j)] = max(structural_similarity(gray[i], np.ascontiguousarray(f(gray[j])), gaussian_weights=True, sigma=1.5,
                                                      use_sample_covariance=False, data_range=1.0)
                               for f in (lambda x: x, np.fliplr, np.flipud, lambda x: np.flipud(np.fliplr(x))))
    skimage_time = time.perf_counter() - start
    index = SSIMIndex(gray)
    a, b = torch.tensor([p[0] for p in pairs]), torch.tensor([p[1] for p in pairs])
    best = torch.cat([index.best(a[s:s + 256], b[s:s + 256])[0] for s in range(0, len(a), 256)]).numpy()
    diff = np.abs(best - np.array([reference[p] for p in pairs])).max()
    assert len(ours) == (best >= 0).sum() # the timed call kept exactly the pairs with a non-negative score
    unflipped = max(abs(float(SSIMIndex(gray).score(torch.tensor([i]), torch.tensor([j]))[0]) -
                        structural_similarity(gray[i], gray[j], gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0))
                    for i, j in pairs[:500])
    print(f'\nWithin-class SSIM on the embedded training set: {len(train)} images, {len(pairs)} pairs x {len(FLIPS)} flips, 32 px')
    print(f'dogcls (vectorised, median of {repeats}): {statistics.median(ours_times):.3f} s')
    print(f'skimage per-pair loop:                 {skimage_time:.1f} s')
    print(f'speed-up:                              {skimage_time / statistics.median(ours_times):.0f}x')
    print(f'largest |score difference|, best over flips: {diff:.2e}; unflipped (500 pairs): {unflipped:.2e}')


def big_class_speed(repeats: int = 3):
    "within_class_ssim on one 1,000-image class (499,500 pairs x 4 flips): block against block, against every pair gathered."
    rng = np.random.default_rng(2)
    gray = rng.random((1000, 32, 32), dtype=np.float32)
    gray[999] = gray[0][:, ::-1]
    m = pd.DataFrame(dict(class_name=['big'] * 1000, file='unused'), index=np.arange(1000))
    times = {}
    for name, block in (('block against block (default)', 32), ('every pair gathered, in batches', 10_000)):
        runs = []
        for _ in range(repeats):
            start = time.perf_counter(); pairs = within_class_ssim(m, 0.95, grey=gray, block=block); runs.append(time.perf_counter() - start)
            assert pairs[['a', 'b', 'view']].values.tolist() == [[0, 999, 'h']]
        times[name] = statistics.median(runs)
    print(f'\nWithin-class SSIM, one class of 1,000 images (499,500 pairs x 4 flips), median of {repeats}:')
    for name, seconds in times.items(): print(f'{name:<34} {seconds:6.2f} s')
    print(f'ratio: {times["every pair gathered, in batches"] / times["block against block (default)"]:.2f}x')


SEARCH_CHILD = '''
import resource, sys, time, numpy as np
from dogcls.dedup import cosine_pairs
n, d = 100_000, 512
rng = np.random.default_rng(0)
x = np.empty((n, d), np.float32)
for s in range(0, n, 10_000): x[s:s + 10_000] = rng.standard_normal((10_000, d), dtype=np.float32)
x /= np.linalg.norm(x, axis=1, keepdims=True)
setup = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
planted = [(10, 99_990), (5_000, 60_000), (42, 43)]
for a, b in planted: x[b] = x[a]
start = time.perf_counter(); pairs = cosine_pairs(x, threshold=0.99); seconds = time.perf_counter() - start
found = set(zip(pairs.a, pairs.b))
print(f"{seconds:.1f} {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} {all(p in found for p in planted)} {len(pairs)} {setup:.0f}")
'''


def search_memory():
    out = subprocess.run([sys.executable, '-c', SEARCH_CHILD], capture_output=True, text=True, check=True).stdout.split()
    print('\nCosine search, 100,000 x 512 embeddings (one view), threshold 0.99, block memory 128 MB (the default):')
    print(f'time {out[0]} s, peak memory of the whole process {out[1]} MB (before the search: {out[4]} MB, of which the '
          f'embeddings are 195 MB), planted duplicates found: {out[2]}, pairs: {out[3]}')



def dogcls_pairs(bench, ssim_threshold=0.95, cosine_threshold=0.99, **options) -> set:
    pairs = find_duplicates(bench, ssim_threshold=ssim_threshold, cosine_threshold=cosine_threshold, **options).pairs
    return {frozenset((a, b)) for a, b in zip(pairs.image_path_a, pairs.image_path_b, strict=True)}


def icon_scores(predicted: set, truth: list, negatives: list, source: dict) -> dict:
    "Precision (all links; without links between orientation variants or their copies), recall overall and per copy kind, share of hard negatives linked per kind."
    true = {frozenset((a, b)): k for a, b, k in truth}
    oriented = {frozenset((a, b)) for a, b, k in negatives if k == 'mirror_or_rotation'}
    tp = sum(p in true for p in predicted)
    orientation_related = [p for p in predicted if p not in true and frozenset(source[x] for x in p) in oriented]
    out = {'pairs': len(predicted), 'precision': tp / max(1, len(predicted)),
           'precision without orientation variants': tp / max(1, len(predicted) - len(orientation_related)),
           'recall': tp / len(true)}
    for kind in dict.fromkeys(k for *_, k in truth):
        wanted = [p for p, k in true.items() if k == kind]
        out[kind] = sum(p in predicted for p in wanted) / len(wanted)
    for kind in dict.fromkeys(k for *_, k in negatives):
        wanted = [frozenset((a, b)) for a, b, k in negatives if k == kind]
        out[f'NEG {kind} ({len(wanted)})'] = sum(p in predicted for p in wanted) / len(wanted)
    return out


def imagededup_pairs(bench: pd.DataFrame, method: str, threshold) -> set:
    "imagededup on a flat copy of the benchmark (it reads one folder)."
    from imagededup import methods
    with tempfile.TemporaryDirectory() as d:
        names = {}
        for r in bench.itertuples():
            flat = r.image_path.replace('/', '__'); names[flat] = r.image_path
            os.symlink(r.file, Path(d)/flat)
        if method == 'phash':
            found = methods.PHash(verbose=False).find_duplicates(image_dir=d, max_distance_threshold=threshold, num_enc_workers=1, num_dist_workers=1)
        else:
            found = methods.CNN(verbose=False).find_duplicates(image_dir=d, min_similarity_threshold=threshold, num_enc_workers=0)
    return {frozenset((names[a], names[b])) for a, dups in found.items() for b in dups}


def icon_benchmark(root: Path, per_kind: int):
    with tempfile.TemporaryDirectory() as d:
        start = time.perf_counter()
        bench, truth, negatives, removed = build(Path(d), per_kind, root=root)
        (Path(d)/'bench.csv').write_text(bench.to_csv(index=False))
        m = icon_manifest(Path(d))
        truth, negatives = [tuple(t) for t in truth], [tuple(n) for n in negatives]
        source = dict(zip(bench.image_path, bench.source, strict=True))
        print(f'Icon benchmark from {root}: {len(m)} images ({(bench.kind == "original").sum()} icons, {removed} left out as pixel-equal to another; '
              f'{len(truth)} known copies, {len(negatives)} hard-negative pairs), built in {time.perf_counter() - start:.0f} s')
        rows = {}
        settings = {
            'dogcls defaults (dihedral, geometric, colour 16)': {},
            'defaults, views=none': dict(views='none'),
            'defaults, views=flips (no rotations)': dict(views='flips'),
            'defaults without colour check': dict(colour_threshold=None),
            'SSIM + pixel cosine only (geometric=False)': dict(geometric=False),
            'geometric path alone (SSIM, cosine thresholds 1.0)': dict(ssim_threshold=1.0, cosine_threshold=1.0),
            'first release: 0.95/0.99, flips, no geometric, no colour': dict(views='flips', geometric=False, colour_threshold=None, max_changed=1.0),
            'first release README: 0.85/0.95, flips, no geometric, no colour': dict(ssim_threshold=0.85, cosine_threshold=0.95, views='flips', geometric=False, colour_threshold=None, max_changed=1.0),
        }
        for name, options in settings.items():
            start = time.perf_counter(); predicted = dogcls_pairs(m, **options); seconds = time.perf_counter() - start
            rows[f'{name} ({seconds:.1f} s)'] = icon_scores(predicted, truth, negatives, source)
        for distance in (4, 10):
            start = time.perf_counter(); predicted = imagededup_pairs(m, 'phash', distance); seconds = time.perf_counter() - start
            rows[f'imagededup PHash, distance <= {distance} ({seconds:.1f} s)'] = icon_scores(predicted, truth, negatives, source)
        try:
            start = time.perf_counter(); predicted = imagededup_pairs(m, 'cnn', 0.9); seconds = time.perf_counter() - start
            rows[f'imagededup CNN, cosine >= 0.9 ({seconds:.1f} s)'] = icon_scores(predicted, truth, negatives, source)
        except Exception as e:
            print(f'imagededup CNN could not run: {type(e).__name__}: {str(e).splitlines()[0][:200]} (it downloads MobileNet weights at first use; this machine is offline)')
    table = pd.DataFrame(rows).T
    with pd.option_context('display.width', 250, 'display.max_columns', 50, 'display.max_colwidth', 70):
        print(table.round(3).T.to_string())


def embedded_benchmark(sources: int):
    manifest, _ = load_data()
    with tempfile.TemporaryDirectory() as d:
        bench, truth, flat = build_benchmark(manifest, sources, Path(d))
        originals = (bench['transform'] == 'original').sum()
        print(f'\nEmbedded clipart benchmark (first release): {len(bench)} images ({originals} distinct originals, {len(truth)} known copies)')
        for name, options in [('dogcls defaults', {}), ('first release: 0.95/0.99, flips, no geometric, no colour', dict(views='flips', geometric=False, colour_threshold=None, max_changed=1.0))]:
            start = time.perf_counter(); predicted = dogcls_pairs(bench, **options); seconds = time.perf_counter() - start
            print_table(f'{name} ({seconds:.1f} s)', evaluate(predicted, truth, bench))
        start = time.perf_counter(); predicted = phash_pairs(flat, 10); seconds = time.perf_counter() - start
        print_table(f'imagededup PHash, Hamming distance <= 10 ({seconds:.1f} s)', evaluate(predicted, truth, bench))


def speed(manifest: pd.DataFrame, name: str, repeats: int):
    "Median time of find_duplicates with the defaults, and of the same call without the geometric path (its share is the difference)."
    times = {}
    for label, options in (('defaults', {}), ('without the geometric path', dict(geometric=False))):
        runs = []
        for _ in range(repeats):
            start = time.perf_counter(); pairs = find_duplicates(manifest, **options).pairs; runs.append(time.perf_counter() - start)
        times[label] = statistics.median(runs)
        print(f'{name}: find_duplicates {label}: median {times[label]:.1f} s of {repeats} ({len(pairs)} pairs)')
    print(f'{name}: geometric path (decoding for local features, visual words, candidates, checks): '
          f'{times["defaults"] - times["without the geometric path"]:.1f} s = {1 - times["without the geometric path"] / times["defaults"]:.0%} of the time')


def crop_sample(seeds=(7, 8), n: int = 400):
    """Crop-and-shift copies (`make_copy`'s 'crop_shift': 0-5 px off each side) of `n` random embedded images a seed:
    the share the geometric check confirms, each way (`_either_way`) and one way (`geometric_check`)."""
    manifest, _ = load_data(decode=False)
    angles = _angles(DedupConfig().views)
    for seed in seeds:
        rng = np.random.default_rng(seed)
        pick = rng.choice(len(manifest), n, replace=False)
        with tempfile.TemporaryDirectory() as d:
            files = []
            for k, i in enumerate(pick):
                copy, _ = make_copy(open_image(manifest.file.iloc[i]), 'crop_shift', rng)
                copy.save(Path(d)/f'{k}.png'); files += [manifest.file.iloc[i], Path(d)/f'{k}.png']
            decoded = decode_all(files)
        both = np.mean([_either_way(decoded, 2 * k, 2 * k + 1, angles)['confirmed'] for k in range(n)])
        one = np.mean([geometric_check(decoded, 2 * k, 2 * k + 1, angles)['confirmed'] for k in range(n)])
        print(f'crop_shift copies of {n} embedded images (seed {seed}): geometric check confirms {both:.1%} ({one:.1%} one way)')


def hamming_speed(images: int = 300, pairs: int = 4000):
    """The ratio test's search (each descriptor's two nearest in the other image) on pairs of the embedded set's images:
    microseconds a pair with faiss and with OpenCV, in one thread and in two, and whether the answers agree."""
    from concurrent.futures import ThreadPoolExecutor
    files = load_data(decode=False)[0].file[:images]
    d = [x for x in decode_all(files)['descriptors'] if x is not None and len(x) >= 2]
    rng = np.random.default_rng(0)
    pick = rng.integers(0, len(d), (pairs, 2))
    opencv = lambda q, b: cv2.batchDistance(q, b, cv2.CV_32S, normType=cv2.NORM_HAMMING, K=2)
    same = all(np.array_equal(x, y) for i, j in pick[:200] for x, y in zip(opencv(d[i], d[j]), _hamming_nearest(d[i], d[j], 2), strict=True))
    print(f'\nHamming search, {pairs} pairs of {len(d)} images (mean {np.mean([len(x) for x in d]):.0f} descriptors): '
          f'same distances and nearest rows on 200 pairs: {same}')
    for name, search in (('OpenCV batchDistance', opencv), ('faiss (_hamming_nearest)', lambda q, b: _hamming_nearest(q, b, 2))):
        for threads in (1, 2):
            def run(part, search=search): [search(d[i], d[j]) for i, j in part]
            start = time.perf_counter()
            with ThreadPoolExecutor(threads) as pool: list(pool.map(run, np.array_split(pick, 16)))
            print(f'  {name:26s} {threads} calling thread(s): {(time.perf_counter() - start) / pairs * 1e6:6.1f} us a pair')


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--icons', type=Path, default=ICONS)
    p.add_argument('--per_kind', type=int, default=40)
    p.add_argument('--sources', type=int, default=350)
    p.add_argument('--scale', action='store_true', help="also time bench/scale.py's 15,000-image set (~/.cache/dogcls/scale-v1-500)")
    p.add_argument('--skip_old', action='store_true')
    p.add_argument('--skip_skimage', action='store_true')
    p.add_argument('--skip_search', action='store_true')
    p.add_argument('--smoke', action='store_true', help='seconds: the clipart benchmark on 12 sources, one timing on 300 images, 20 crop copies, the Hamming searches '
                   'on 60 images (not the icon benchmark: it needs oxygen-icon-theme and minutes); the figures mean nothing')
    args = p.parse_args()
    if args.smoke:
        embedded_benchmark(12)
        speed(load_data(decode=False)[0].head(300), 'Embedded set, first 300 images', 1)
        crop_sample((7,), 20)
        hamming_speed(60, 200)
        return
    if not any(args.icons.glob('*x*/*/*.png')): sys.exit(f'{args.icons}: no icons; install them with: apt-get install oxygen-icon-theme')
    icon_benchmark(args.icons, args.per_kind)
    if not args.skip_old: embedded_benchmark(args.sources)
    crop_sample()
    manifest, _ = load_data(decode=False)
    speed(manifest, f'\nEmbedded set ({len(manifest)} images)', 3)
    if args.scale:
        from dogcls.core import cache_dir
        folder = cache_dir()/'scale-v1-500'
        if not folder.is_dir(): sys.exit(f'{folder}: build it first with .venv/bin/python bench/scale.py --build-only')
        big, _ = load_data(folder, decode=False)
        speed(big, f'Scale set ({len(big)} images)', 1)
    if not args.skip_skimage: ssim_speed()
    big_class_speed()
    hamming_speed()
    if not args.skip_search: search_memory()


if __name__ == '__main__':
    main()
