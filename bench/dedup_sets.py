"""The near-duplicate benchmark sets that bench/dedup.py scores, built at run time (nothing is committed):

1. Icons from Debian's `oxygen-icon-theme` (`build`): one PNG per icon name, known copies of 12 kinds and hard
   negatives of 4 (see bench/dedup.py for the kinds and how they are scored).
2. The embedded clipart benchmark of the first release (`build_benchmark`): distinct originals and known copies.

    .venv/bin/python bench/dedup_sets.py --out /tmp/sets   # write both (the icons when installed) to look at
    .venv/bin/python bench/dedup_sets.py --smoke           # seconds: the clipart set with 12 copies, in a temporary folder
"""
import argparse
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageEnhance, ImageFont

from dogcls.core import file_sha1
from dogcls.data import load_data, open_image
from dogcls.dedup import cosine_pairs, pixel_embeddings, thumbnails, to_grey, within_class_ssim

MIRROR = [('left', 'right'), ('next', 'previous'), ('forward', 'backward'), ('up', 'down'), ('ltr', 'rtl'), ('undo', 'redo'), ('top', 'bottom')]
COLOURS = ['red', 'green', 'blue', 'yellow', 'orange', 'violet', 'cyan', 'brown', 'black', 'grey', 'gray', 'white', 'magenta', 'purple', 'pink']
WORDS = ['SALE', 'copy', '© 2024', 'demo', 'Sample', 'WWW']

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
    return [it for it, k in zip(items, keep, strict=True) if k], int((~keep).sum()), [(names[i], names[j]) for i, j in oriented]

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
    for members in fam.values():
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
    gray = to_grey(thumbs)
    blank = gray.reshape(len(m), -1).std(1) < 1e-3
    close = set()
    emb = pixel_embeddings(thumbs)
    for r in cosine_pairs(emb, 0.9).itertuples(): close.add((r.a, r.b))
    ssim = within_class_ssim(m.assign(class_name=m.class_name.where(m.split == 'train', 'test images')), 0.8, grey=gray)
    close |= set(zip(ssim.a, ssim.b, strict=True))
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
    base = distinct_originals(manifest, {p: codes[n] for p, n in zip(manifest.image_path, manifest.flat_name, strict=True)})
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


def icon_manifest(folder: Path) -> pd.DataFrame:
    bench = pd.read_csv(folder/'bench.csv')
    bench['file'] = [str(folder/p) for p in bench.image_path]
    bench['split'], bench['group'] = 'train', bench.image_path
    bench['target'] = bench.class_name.map({c: i for i, c in enumerate(sorted(bench.class_name.unique()))})
    bench['sha1'] = [file_sha1(f) for f in bench.file]
    return bench.set_index('image_path', drop=False)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--out', type=Path, default=None, help='write the sets here (default: a temporary folder, removed)')
    p.add_argument('--per_kind', type=int, default=40)
    p.add_argument('--sources', type=int, default=350)
    p.add_argument('--smoke', action='store_true', help='the clipart set with 12 copies only, in a temporary folder (seconds)')
    args = p.parse_args()
    if args.smoke: args.out, args.sources = None, 12
    with tempfile.TemporaryDirectory() as d:
        out = args.out or Path(d)
        bench, truth, _ = build_benchmark(load_data()[0], args.sources, out/'clipart')
        print(f'clipart set: {len(bench)} images, {len(truth)} known copies ({pd.Series([t for *_, t in truth]).value_counts().to_dict()})')
        if not args.smoke and any(ICONS.glob('*x*/*/*.png')):
            icons, truth, negatives, removed = build(out/'icons', args.per_kind)
            print(f'icon set: {len(icons)} images, {len(truth)} known copies, {len(negatives)} hard-negative pairs, {removed} left out')
        if args.out: print(f'written to {args.out}')


if __name__ == '__main__':
    main()
