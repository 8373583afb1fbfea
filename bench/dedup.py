"""Near-duplicate benchmark on the embedded clipart set.

1. Ground truth: distinct original images (no byte-identical twin, not blank, and no other original within a margin
   of any method measured here: flip-invariant SSIM >= 0.8, pixel cosine >= 0.9 or PHash distance <= 10), plus known
   copies of some of them: horizontal flip, vertical flip, resize, JPEG recompression, small crop/shift, brightness
   change (same class) and a copy filed under another class. The positives are the (source, copy) pairs.
2. Precision and recall per transform for dogcls (exact hash + within-class SSIM + pixel cosine, i.e.
   `find_duplicates`) at several thresholds, and for imagededup's PHash at several Hamming distances.
3. Time of dogcls's vectorised within-class SSIM against a per-pair `skimage.metrics.structural_similarity` loop (the
   reference's method) on the same pairs and flips of the embedded training set, and the largest score difference.
4. Cross-class cosine search over 100,000 random 512-d embeddings (with planted duplicates): time and peak memory,
   in a child process.

    .venv/bin/python bench/dedup.py [--sources 350] [--skip_skimage] [--skip_search]
"""
import argparse, itertools, shutil, statistics, subprocess, sys, tempfile, time
from pathlib import Path

import numpy as np, pandas as pd, torch
from PIL import Image, ImageEnhance

from dogcls.data import load_data, open_image
from dogcls.dedup import (FLIPS, SSIMIndex, cosine_pairs, find_duplicates, pixel_embeddings, thumbnails, to_gray,
                          within_class_ssim)

TRANSFORMS = ['hflip', 'vflip', 'resize', 'jpeg', 'crop_shift', 'brightness', 'other_class']


def make_copy(im: Image.Image, transform: str, rng) -> tuple[Image.Image, dict]:
    "A known copy of `im` and the save options."
    if transform == 'hflip': return im.transpose(Image.Transpose.FLIP_LEFT_RIGHT), {}
    if transform == 'vflip': return im.transpose(Image.Transpose.FLIP_TOP_BOTTOM), {}
    if transform == 'resize':
        scale = rng.uniform(0.5, 0.8)
        return im.resize((max(8, round(im.width * scale)), max(8, round(im.height * scale))), Image.Resampling.BICUBIC), {}
    if transform == 'jpeg': return im, {'format': 'JPEG', 'quality': int(rng.integers(30, 60))}
    if transform == 'crop_shift':
        w, h = im.size
        left, top = int(rng.integers(0, 6)), int(rng.integers(0, 6))
        right, bottom = w - int(rng.integers(0, 6)), h - int(rng.integers(0, 6))
        return im.crop((left, top, right, bottom)), {}
    if transform == 'brightness': return ImageEnhance.Brightness(im).enhance(rng.choice([0.75, 0.85, 1.15, 1.25])), {}
    if transform == 'other_class': return im, {'compress_level': 1} # same pixels, different bytes
    raise ValueError(transform)


def distinct_originals(manifest: pd.DataFrame, phash: dict) -> pd.DataFrame:
    "Originals with no near neighbour among the others by any method (greedy, in a seeded order)."
    m = manifest[~manifest.sha1.duplicated(keep=False)].reset_index(drop=True)
    thumbs, _ = thumbnails(m.file)
    gray = to_gray(thumbs)
    blank = gray.reshape(len(m), -1).std(1) < 1e-3
    close = set()
    emb = pixel_embeddings(thumbs)
    for r in cosine_pairs(emb, 0.9).itertuples(): close.add((r.a, r.b))
    ssim = within_class_ssim(m.assign(class_name=m.class_name.where(m.split == 'train', 'test images')), 0.8, gray=gray)
    close |= set(zip(ssim.a, ssim.b))
    hashes = np.array([[int(c, 16) for c in phash[n]] for n in m.image_path])
    bits = np.unpackbits(hashes.astype(np.uint8)[:, :, None], axis=2)[:, :, 4:].reshape(len(m), -1)
    for i in range(len(m)):
        dist = (bits[i] != bits[i + 1:]).sum(1)
        for j in np.nonzero(dist <= 10)[0]: close.add((i, i + 1 + j))
    neighbours = {i: set() for i in range(len(m))}
    for i, j in close: neighbours[i].add(j); neighbours[j].add(i)
    order = np.random.default_rng(0).permutation(len(m))
    chosen, banned = [], set()
    for i in order:
        if blank[i] or i in banned: continue
        chosen.append(i); banned |= neighbours[i] | {i}
    return m.iloc[sorted(chosen)].reset_index(drop=True)


def phash_of(folder: Path) -> dict:
    from imagededup.methods import PHash
    return PHash(verbose=False).encode_images(image_dir=str(folder), num_enc_workers=1)


def build_benchmark(manifest, n_sources: int, folder: Path):
    "Write distinct originals and copies into one folder; return the benchmark manifest, the true pairs and the folder."
    flat = folder/'flat'; flat.mkdir(parents=True)
    manifest = manifest.assign(flat_name=[f'{i:05d}_{Path(p).name}' for i, p in enumerate(manifest.image_path)])
    for r in manifest.itertuples(): shutil.copy(r.file, flat/r.flat_name)
    codes = phash_of(flat)
    base = distinct_originals(manifest, {p: codes[n] for p, n in zip(manifest.image_path, manifest.flat_name)})
    rng = np.random.default_rng(1)
    sources = base.iloc[rng.permutation(len(base))[:n_sources]]
    rows = [dict(image_path=r.flat_name, class_name=r.class_name, source=r.flat_name, transform='original',
                 file=str(flat/r.flat_name)) for r in base.itertuples()]
    classes = sorted(manifest.class_name.unique())
    truth = []
    for k, r in enumerate(sources.itertuples()):
        transform = TRANSFORMS[k % len(TRANSFORMS)]
        copy, options = make_copy(open_image(r.file), transform, rng)
        name = f'copy{k}_{transform}.' + ('jpg' if options.get('format') == 'JPEG' else 'png')
        copy.save(flat/name, **options)
        cls = rng.choice([c for c in classes if c != r.class_name]) if transform == 'other_class' else r.class_name
        rows.append(dict(image_path=name, class_name=cls, source=r.flat_name, transform=transform, file=str(flat/name)))
        truth.append((r.flat_name, name, transform))
    for f in flat.iterdir():
        if f.name not in {r['image_path'] for r in rows}: f.unlink()
    bench = pd.DataFrame(rows)
    bench['target'] = bench.class_name.map({c: i for i, c in enumerate(classes)})
    bench['split'], bench['group'] = 'train', bench.image_path
    from dogcls.core import file_sha1
    bench['sha1'] = [file_sha1(f) for f in bench.file]
    return bench, truth, flat


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


def dogcls_pairs(bench, ssim_threshold, cosine_threshold) -> set:
    pairs, _ = find_duplicates(bench, ssim_threshold=ssim_threshold, cosine_threshold=cosine_threshold)
    return {frozenset((a, b)) for a, b in zip(pairs.image_path_a, pairs.image_path_b)}


def phash_pairs(flat: Path, distance: int) -> set:
    from imagededup.methods import PHash
    found = PHash(verbose=False).find_duplicates(image_dir=str(flat), max_distance_threshold=distance, num_enc_workers=1, num_dist_workers=1)
    return {frozenset((a, b)) for a, dups in found.items() for b in dups}


def ssim_speed(repeats: int = 3):
    from skimage.metrics import structural_similarity
    manifest, _ = load_data()
    train = manifest[manifest.split == 'train'].reset_index(drop=True)
    gray = to_gray(thumbnails(train.file)[0])
    pairs = [(i, j) for _, rows in train.groupby('class_name').groups.items() for i, j in itertools.combinations(sorted(rows), 2)]
    ours_times = []
    for _ in range(repeats):
        start = time.perf_counter(); ours = within_class_ssim(train, threshold=0.0, gray=gray); ours_times.append(time.perf_counter() - start)
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
            start = time.perf_counter(); pairs = within_class_ssim(m, 0.95, gray=gray, block=block); runs.append(time.perf_counter() - start)
            assert pairs[['a', 'b', 'flip']].values.tolist() == [[0, 999, 'h']]
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
    print(f'\nCosine search, 100,000 x 512 embeddings (one view), threshold 0.99, block memory 256 MB:')
    print(f'time {out[0]} s, peak memory of the whole process {out[1]} MB (before the search: {out[4]} MB, of which the '
          f'embeddings are 195 MB), planted duplicates found: {out[2]}, pairs: {out[3]}')


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--sources', type=int, default=350)
    p.add_argument('--skip_skimage', action='store_true')
    p.add_argument('--skip_search', action='store_true')
    args = p.parse_args()
    manifest, _ = load_data()
    with tempfile.TemporaryDirectory() as d:
        bench, truth, flat = build_benchmark(manifest, args.sources, Path(d))
        originals = (bench['transform'] == 'original').sum()
        print(f'Benchmark: {len(bench)} images ({originals} distinct originals, {len(truth)} known copies)')
        for ssim_t, cos_t in [(0.95, 0.99), (0.9, 0.97), (0.85, 0.95), (0.8, 0.93)]:
            start = time.perf_counter(); predicted = dogcls_pairs(bench, ssim_t, cos_t); seconds = time.perf_counter() - start
            print_table(f'dogcls, SSIM >= {ssim_t} within class, pixel cosine >= {cos_t} ({seconds:.1f} s)', evaluate(predicted, truth, bench))
        for distance in (4, 10, 16):
            start = time.perf_counter(); predicted = phash_pairs(flat, distance); seconds = time.perf_counter() - start
            print_table(f'imagededup PHash, Hamming distance <= {distance} ({seconds:.1f} s)', evaluate(predicted, truth, bench))
    if not args.skip_skimage: ssim_speed()
    big_class_speed()
    if not args.skip_search: search_memory()


if __name__ == '__main__':
    main()
