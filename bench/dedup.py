"""Near-duplicate benchmarks: a held-apart icon benchmark (the defaults are chosen on it) and the embedded clipart one.

1. Icon benchmark, built at run time from Debian's `oxygen-icon-theme` (apt-get install oxygen-icon-theme; nothing is
   committed): one PNG per icon name (128 px, else 64/48/256), files whose pixels equal an earlier one's (mean absolute
   difference < 0.02 at 32 px) left out. Known copies of some icons: mirror (h, v), rotation by 90 degrees, resize,
   JPEG, brightness, crop of 60-90 % of the side, shift by 5-15 %, mild recolouring (hue +-12 degrees, saturation
   x0.75-1.25), overlaid text, the same pixels filed under another class, and a CMYK JPEG. Hard negatives, labelled
   distinct: icons that are mirror images or rotations of each other, colour variants (folder-red, folder-blue...),
   other icons of one name family (same object, different drawing), and strong recolourings (hue rotated by 120-240
   degrees). Precision counts every linked pair that is not a known copy; "without orientation variants" leaves out
   links between icons that are mirror images or rotations of each other, or between their copies (a flip- and
   rotation-tolerant search must link them; use flips='none' for such data).
2. The embedded clipart benchmark of the first release (distinct originals and known copies), for comparison.
3. imagededup's PHash (and its CNN, which needs downloaded weights) on the icon benchmark.
4. Time of `find_duplicates` with the defaults on the embedded set and (--scale) on bench/scale.py's 15,000-image set,
   with the share of the geometric check; SSIM against scikit-image; cosine search memory.

    .venv/bin/python bench/dedup.py [--icons /usr/share/icons/oxygen/base] [--per_kind 40] [--scale] [--skip_old] [--skip_skimage] [--skip_search]
    .venv/bin/python bench/dedup.py --smoke   # seconds: the clipart benchmark with 12 sources and one timing on 300 images
"""
import argparse, colorsys, itertools, os, shutil, statistics, subprocess, sys, tempfile, time
from pathlib import Path

import numpy as np, pandas as pd, torch
from PIL import Image, ImageDraw, ImageEnhance, ImageFont

from dogcls.core import file_sha1
from dogcls.data import load_data, open_image
from dogcls.dedup import (FLIPS, SSIMIndex, cosine_pairs, find_duplicates, pixel_embeddings, thumbnails, to_gray,
                          within_class_ssim)

ICONS = Path('/usr/share/icons/oxygen/base')
COPY_KINDS = ['hflip', 'vflip', 'rot90', 'resize', 'jpeg', 'brightness', 'crop', 'shift', 'recolour', 'text', 'other_class', 'cmyk_jpeg']
NEGATIVE_KINDS = ['recolour_distinct', 'mirror_pair', 'colour_variant', 'same_object']

def on_white(path, side=None):
    im = Image.open(path).convert('RGBA')
    bg = Image.new('RGBA', im.size, (255, 255, 255, 255)); bg.alpha_composite(im)
    return bg.convert('RGB')

def icon_files(root=ICONS, sizes=(128, 64, 48, 256)):
    "One file per (category, name): the first available of `sizes`."
    chosen, real = {}, set()
    for s in sizes:
        d = root/f'{s}x{s}'
        if not d.is_dir(): continue
        for f in sorted(d.glob('*/*.png')):
            key = (f.parent.name, f.stem)
            if key in chosen: continue
            r = os.path.realpath(f)
            if r in real: continue
            real.add(r); chosen[key] = f
    return [(c, n, f) for (c, n), f in sorted(chosen.items())]

DIHEDRAL = [lambda x: x, np.fliplr, np.flipud, lambda x: x[::-1, ::-1], np.rot90, lambda x: np.rot90(x, 3), lambda x: np.fliplr(np.rot90(x)), lambda x: np.flipud(np.rot90(x))]

def distinct(items, size=32, tol=0.02):
    "Drop icons whose pixels equal an earlier icon's within `tol` (mean abs difference at 32 px; mirror images stay: they are hard negatives)."
    thumbs = np.stack([np.asarray(on_white(f).resize((size, size), Image.Resampling.BILINEAR), np.float32) / 255 for _, _, f in items])
    flat = thumbs.reshape(len(items), -1)
    keep = np.ones(len(items), bool)
    views = flat[:, None]
    for i in range(len(items)):
        if not keep[i]: continue
        d = np.abs(views[i + 1:] - flat[i][None, None]).mean(-1).min(1)
        keep[i + 1:][d < tol] = False
    kept = np.nonzero(keep)[0]
    views = np.stack([np.stack([v(thumbs[i]) for v in DIHEDRAL[1:]]) for i in kept]).reshape(len(kept), 7, -1)
    oriented = []
    for x, i in enumerate(kept):
        d = np.abs(views[x + 1:] - flat[i][None, None]).mean(-1).min(1)
        oriented += [(int(i), int(kept[x + 1 + y])) for y in np.nonzero(d < tol)[0]]
    names = {i: f'{items[i][0]}/{items[i][1]}.png' for i in kept}
    return [it for it, k in zip(items, keep) if k], int((~keep).sum()), [(names[i], names[j]) for i, j in oriented]

MIRROR = [('left', 'right'), ('next', 'previous'), ('forward', 'backward'), ('up', 'down'), ('ltr', 'rtl'), ('undo', 'redo'), ('top', 'bottom')]
COLOURS = ['red', 'green', 'blue', 'yellow', 'orange', 'violet', 'cyan', 'brown', 'black', 'grey', 'gray', 'white', 'magenta', 'purple', 'pink']

def natural_negatives(df, rng, max_same=400):
    "Pairs of distinct originals that look alike: mirrored names, colour variants, and other members of a name family."
    by_name = {}
    for r in df.itertuples(): by_name.setdefault(r.stem, []).append(r.image_path)
    pairs = []
    for r in df.itertuples():
        toks = r.stem.split('-')
        for a, b in MIRROR:
            if a in toks:
                other = '-'.join(b if t == a else t for t in toks)
                for p in by_name.get(other, []): pairs.append((r.image_path, p, 'mirror_pair'))
    fam = {}
    for r in df.itertuples():
        toks = r.stem.split('-')
        if toks[-1] in COLOURS: fam.setdefault(('colour', r.category, '-'.join(toks[:-1])), []).append(r.image_path)
    for k, members in fam.items():
        for i in range(len(members)):
            for j in range(i + 1, len(members)): pairs.append((members[i], members[j], 'colour_variant'))
    fam = {}
    for r in df.itertuples():
        toks = r.stem.split('-')
        if len(toks) > 1: fam.setdefault((r.category, toks[0]), []).append(r.image_path)
    same = []
    for members in fam.values():
        for i in range(len(members)):
            for j in range(i + 1, len(members)): same.append((members[i], members[j], 'same_object'))
    taken = {frozenset(p[:2]) for p in pairs}
    same = [p for p in same if frozenset(p[:2]) not in taken]
    pick = rng.permutation(len(same))[:max_same]
    return pairs + [same[i] for i in sorted(pick)]

def hue_shift(im, degrees, saturation=1.0):
    a = np.asarray(im.convert('HSV'), np.float32)
    a[..., 0] = (a[..., 0] + degrees / 360 * 255) % 255
    a[..., 1] = np.clip(a[..., 1] * saturation, 0, 255)
    return Image.fromarray(a.astype(np.uint8), 'HSV').convert('RGB')

def chroma_change(a, b):
    "Mean CIELAB a*b* distance over the pixels coloured in either picture (skimage's conversion)."
    from skimage.color import rgb2lab
    la, lb = rgb2lab(np.asarray(a))[..., 1:], rgb2lab(np.asarray(b))[..., 1:]
    coloured = np.maximum(np.linalg.norm(la, axis=-1), np.linalg.norm(lb, axis=-1)) >= 8
    return float(np.linalg.norm(la - lb, axis=-1)[coloured].mean()) if coloured.any() else 0.0

WORDS = ['SALE', 'copy', '© 2024', 'demo', 'Sample', 'WWW']

def icon_copy(im, kind, rng):
    w, h = im.size
    if kind == 'hflip': return im.transpose(Image.Transpose.FLIP_LEFT_RIGHT), {}
    if kind == 'vflip': return im.transpose(Image.Transpose.FLIP_TOP_BOTTOM), {}
    if kind == 'rot90': return im.transpose(rng.choice([Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_270])), {}
    if kind == 'resize':
        s = rng.uniform(0.5, 0.8); return im.resize((max(8, round(w * s)), max(8, round(h * s))), Image.Resampling.BICUBIC), {}
    if kind == 'jpeg': return im, {'format': 'JPEG', 'quality': int(rng.integers(30, 60))}
    if kind == 'brightness': return ImageEnhance.Brightness(im).enhance(rng.choice([0.75, 0.85, 1.15, 1.25])), {}
    if kind == 'crop':
        s = rng.uniform(0.6, 0.9); cw, ch = round(w * s), round(h * s)
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        return im.crop((x, y, x + cw, y + ch)), {}
    if kind == 'shift':
        dx, dy = [int(rng.choice([-1, 1]) * rng.uniform(0.05, 0.15) * s) for s in (w, h)]
        out = Image.new('RGB', (w, h), (255, 255, 255)); out.paste(im, (dx, dy)); return out, {}
    if kind == 'recolour': return hue_shift(im, rng.uniform(-12, 12), rng.uniform(0.75, 1.25)), {}
    if kind == 'text':
        out = im.copy(); d = ImageDraw.Draw(out)
        font = ImageFont.load_default(size=max(10, h // 7))
        d.text((int(w * rng.uniform(0.02, 0.4)), int(h * rng.uniform(0.6, 0.8))), str(rng.choice(WORDS)), fill=tuple(int(c) for c in rng.integers(0, 255, 3)), font=font)
        return out, {}
    if kind == 'other_class': return im, {'compress_level': 1}
    if kind == 'cmyk_jpeg': return im.convert('CMYK'), {'format': 'JPEG', 'quality': 85}
    if kind == 'recolour_distinct': return hue_shift(im, rng.choice([120, 180, 240])), {}
    raise ValueError(kind)

def build(folder, n_per_kind=40, seed=0, root=ICONS):
    folder = Path(folder); folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    items, removed, oriented = distinct(icon_files(root))
    rows = []
    for c, n, f in items:
        name = f'{c}/{n}.png'; (folder/c).mkdir(exist_ok=True)
        on_white(f).save(folder/name)
        rows.append(dict(image_path=name, class_name=c, stem=n, category=c, source=name, kind='original'))
    df = pd.DataFrame(rows)
    negatives = natural_negatives(df, rng)
    mirrored = {frozenset(p[:2]) for p in negatives if p[2] == 'mirror_pair'}
    negatives = [p for p in negatives if p[2] != 'mirror_pair'] + [(a, b, 'mirror_or_rotation') for a, b in oriented]
    negatives += [(a, b, 'mirror_pair') for a, b in (tuple(p) for p in mirrored) if frozenset((a, b)) not in {frozenset(o) for o in oriented}]
    # sources of planted copies: icons with visible colour for the recolour kinds
    order = rng.permutation(len(df)); used = 0
    truth, copies = [], []
    classes = sorted(df.class_name.unique())
    kinds = COPY_KINDS + ['recolour_distinct']
    for kind in kinds:
        for k in range(n_per_kind):
            while True:
                src = df.iloc[order[used % len(df)]]; used += 1
                im = Image.open(folder/src.image_path).convert('RGB')
                copy, options = icon_copy(im, kind, rng)
                if kind != 'recolour_distinct' or chroma_change(im, copy) >= 20: break
            ext = 'jpg' if options.get('format') == 'JPEG' else 'png'
            cls = rng.choice([c for c in classes if c != src.class_name]) if kind == 'other_class' else src.class_name
            name = f'{cls}/copy-{kind}-{k}.{ext}'
            copy.save(folder/name, **options)
            copies.append(dict(image_path=name, class_name=cls, stem=f'copy-{kind}-{k}', category=cls, source=src.image_path, kind=kind))
            if kind == 'recolour_distinct': negatives.append((src.image_path, name, kind))
            else: truth.append((src.image_path, name, kind))
    bench = pd.concat([df, pd.DataFrame(copies)], ignore_index=True)
    return bench, truth, negatives, removed


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



def dogcls_pairs(bench, ssim_threshold=0.95, cosine_threshold=0.99, **options) -> set:
    pairs, _ = find_duplicates(bench, ssim_threshold=ssim_threshold, cosine_threshold=cosine_threshold, **options)
    return {frozenset((a, b)) for a, b in zip(pairs.image_path_a, pairs.image_path_b)}


def icon_manifest(folder: Path) -> pd.DataFrame:
    bench = pd.read_csv(folder/'bench.csv')
    bench['file'] = [str(folder/p) for p in bench.image_path]
    bench['split'], bench['group'] = 'train', bench.image_path
    bench['target'] = bench.class_name.map({c: i for i, c in enumerate(sorted(bench.class_name.unique()))})
    bench['sha1'] = [file_sha1(f) for f in bench.file]
    return bench.set_index('image_path', drop=False)


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
        source = dict(zip(bench.image_path, bench.source))
        print(f'Icon benchmark from {root}: {len(m)} images ({(bench.kind == "original").sum()} icons, {removed} left out as pixel-equal to another; '
              f'{len(truth)} known copies, {len(negatives)} hard-negative pairs), built in {time.perf_counter() - start:.0f} s')
        rows = {}
        settings = {
            'dogcls defaults (dihedral, geometric, colour 16)': {},
            'defaults, flips=none': dict(flips='none'),
            'defaults, flips=flips (no rotations)': dict(flips='flips'),
            'defaults without colour check': dict(colour_threshold=None),
            'SSIM + pixel cosine only (geometric=False)': dict(geometric=False),
            'geometric path alone (SSIM, cosine thresholds 1.0)': dict(ssim_threshold=1.0, cosine_threshold=1.0),
            'first release: 0.95/0.99, flips, no geometric, no colour': dict(flips='flips', geometric=False, colour_threshold=None, max_changed=1.0),
            'first release README: 0.85/0.95, flips, no geometric, no colour': dict(ssim_threshold=0.85, cosine_threshold=0.95, flips='flips', geometric=False, colour_threshold=None, max_changed=1.0),
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
        for name, options in [('dogcls defaults', {}), ('first release: 0.95/0.99, flips, no geometric, no colour', dict(flips='flips', geometric=False, colour_threshold=None, max_changed=1.0))]:
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
            start = time.perf_counter(); pairs, _ = find_duplicates(manifest, **options); runs.append(time.perf_counter() - start)
        times[label] = statistics.median(runs)
        print(f'{name}: find_duplicates {label}: median {times[label]:.1f} s of {repeats} ({len(pairs)} pairs)')
    print(f'{name}: geometric path (decoding for local features, visual words, candidates, checks): '
          f'{times["defaults"] - times["without the geometric path"]:.1f} s = {1 - times["without the geometric path"] / times["defaults"]:.0%} of the time')


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--icons', type=Path, default=ICONS)
    p.add_argument('--per_kind', type=int, default=40)
    p.add_argument('--sources', type=int, default=350)
    p.add_argument('--scale', action='store_true', help="also time bench/scale.py's 15,000-image set (~/.cache/dogcls/scale-v1-500)")
    p.add_argument('--skip_old', action='store_true')
    p.add_argument('--skip_skimage', action='store_true')
    p.add_argument('--skip_search', action='store_true')
    p.add_argument('--smoke', action='store_true', help='seconds: the clipart benchmark on 12 sources and one timing on 300 images '
                   '(not the icon benchmark: it needs oxygen-icon-theme and minutes); the figures mean nothing')
    args = p.parse_args()
    if args.smoke:
        embedded_benchmark(12)
        speed(load_data(decode=False)[0].head(300), 'Embedded set, first 300 images', 1)
        return
    if not any(args.icons.glob('*x*/*/*.png')): sys.exit(f'{args.icons}: no icons; install them with: apt-get install oxygen-icon-theme')
    icon_benchmark(args.icons, args.per_kind)
    if not args.skip_old: embedded_benchmark(args.sources)
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
    if not args.skip_search: search_memory()


if __name__ == '__main__':
    main()
