"Near-duplicate detection: agreement with scikit-image, flips, every bad input of the dedup issue, decisions, notebook."
import html
import json
import re
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import CLIPART, clipart_slice, run_notebook, save, tree_state
from PIL import Image, ImageOps
from skimage.metrics import structural_similarity

from dogcls.core import DataError
from dogcls.data import assign_folds, load_data
from dogcls.dedup import (
    DedupConfig,
    SSIMIndex,
    apply_decisions,
    cosine_pairs,
    find_duplicates,
    propose_decisions,
    save_decisions,
    thumbnails,
    to_grey,
    within_class_ssim,
)
from dogcls.report import unsummarised_sections
from dogcls.review import DuplicateReviewer


def drawing(seed: int, size=(120, 90)) -> Image.Image:
    "A random clipart-like drawing: coloured rectangles and lines on white."
    rng = np.random.default_rng(seed)
    im = Image.new('RGB', size, 'white')
    from PIL import ImageDraw
    d = ImageDraw.Draw(im)
    for _ in range(6):
        x0, y0 = rng.integers(0, size[0] - 20), rng.integers(0, size[1] - 20)
        d.rectangle([x0, y0, x0 + rng.integers(8, 40), y0 + rng.integers(8, 40)], fill=tuple(int(c) for c in rng.integers(0, 200, 3)))
        d.line([tuple(rng.integers(0, size[0], 2)), tuple(rng.integers(0, size[1], 2))], fill='black', width=3)
    return im


def manifest_of(rows: list[tuple[Path, str]]) -> pd.DataFrame:
    classes = sorted({c for _, c in rows})
    return pd.DataFrame(dict(image_path=[p.name for p, _ in rows], class_name=[c for _, c in rows],
                             target=[classes.index(c) for _, c in rows], split='train', group=[p.name for p, _ in rows],
                             file=[str(p) for p, _ in rows]))


# ---------------------------------------------------------------- SSIM
@pytest.mark.parametrize('size', [32, 48, 64])
def test_ssim_agrees_with_skimage(size):
    manifest, _ = load_data(CLIPART)
    gray = to_grey(thumbnails(manifest.file[:30], size)[0])
    gray = np.concatenate([gray, np.random.default_rng(0).random((5, size, size), dtype=np.float32)])
    index = SSIMIndex(gray)
    a, b = torch.triu_indices(len(gray), len(gray), 1)
    ours = index.score(a, b).numpy()
    ref = np.array([structural_similarity(gray[i], gray[j], gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                          data_range=1.0) for i, j in zip(a.tolist(), b.tolist(), strict=True)])
    assert np.abs(ours - ref).max() < 1e-3
    assert np.abs(ours - ref).max() < 1e-5 # in fact float32 matches float64 far closer than required

def test_ssim_data_range_255():
    x = np.random.default_rng(1).integers(0, 256, (2, 40, 40)).astype(np.float32)
    ours = SSIMIndex(x, data_range=255).score(torch.tensor([0]), torch.tensor([1])).item()
    assert abs(ours - structural_similarity(x[0], x[1], gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255)) < 1e-4

@pytest.mark.parametrize('view,transpose', [('h', Image.Transpose.FLIP_LEFT_RIGHT), ('v', Image.Transpose.FLIP_TOP_BOTTOM),
                                            ('hv', Image.Transpose.ROTATE_180)])
def test_flipped_copies_score_one(tmp_path, view, transpose):
    im = drawing(3)
    rows = [(save(im, tmp_path/'a.png'), 'x'), (save(im.transpose(transpose), tmp_path/'b.png'), 'x'), (save(drawing(4), tmp_path/'c.png'), 'x')]
    pairs = within_class_ssim(manifest_of(rows), threshold=0.95)
    assert len(pairs) == 1 and pairs.view[0] == view and pairs.score[0] > 0.999
    assert within_class_ssim(manifest_of(rows), threshold=0.95, views=('none',)).empty # without flips it is missed


# ---------------------------------------------------------------- bad input
def test_classes_with_one_image(tmp_path):
    rows = [(save(drawing(i), tmp_path/f'{i}.png'), f'class{i}') for i in range(4)]
    assert within_class_ssim(manifest_of(rows)).empty
    pairs, problems, _ = find_duplicates(manifest_of(rows))
    assert pairs.empty and problems.empty
    assert propose_decisions(manifest_of(rows), pairs).empty

def test_class_of_identical_images(tmp_path):
    im = drawing(5)
    rows = [(save(im, tmp_path/f'{i}.png', compress_level=i % 9), 'same') for i in range(10)]
    m = manifest_of(rows)
    pairs = within_class_ssim(m)
    assert len(pairs) == 45 and (pairs.score > 0.999).all()
    pairs = find_duplicates(m)[0]
    decisions = propose_decisions(m, pairs, within_policy='drop', min_class_images=0, min_class_share=0)
    assert decisions.cluster.nunique() == 1 and (decisions.action == 'keep').sum() == 1 and (decisions.action == 'drop').sum() == 9
    grouped = propose_decisions(m, pairs) # the default, 'group': all ten kept, in one fold group
    assert (grouped.action == 'keep').all() and apply_decisions(m, grouped).group.nunique() == 1
    # 'drop' would leave the class with 1 of its 10 images, under the default floor (5, and half): all kept for review
    floored = propose_decisions(m, pairs, within_policy='drop')
    assert (floored.action == 'keep').all() and floored.protected.sum() == 9 and floored[floored.protected].review.all()

def test_class_of_1000_images_block_against_block():
    "A large class is scored block against block; its one mirrored copy is found, with the flip. (Its speed: bench/dedup.py.)"
    rng = np.random.default_rng(2)
    gray = rng.random((1000, 32, 32), dtype=np.float32)
    gray[999] = gray[0][:, ::-1] # one mirrored copy
    m = pd.DataFrame(dict(class_name=['big'] * 1000, file='unused'), index=np.arange(1000))
    pairs = within_class_ssim(m, threshold=0.95, grey=gray)
    assert pairs[['a', 'b', 'view']].values.tolist() == [[0, 999, 'h']]

def test_mixed_sizes_and_colour_modes_are_matched(tmp_path):
    im = drawing(6, size=(160, 120))
    rows = [(save(im, tmp_path/'rgb.png'), 'x'),
            (save(im.resize((80, 60)).convert('L'), tmp_path/'gray_small.png'), 'x'),
            (save(im.convert('P', palette=Image.Palette.ADAPTIVE), tmp_path/'palette.gif'), 'x'),
            (save(im.convert('CMYK'), tmp_path/'cmyk.jpg', quality=95), 'x'),
            (save(im.resize((320, 240)).convert('RGBA'), tmp_path/'rgba_big.png'), 'x'),
            (save(drawing(7), tmp_path/'other.png'), 'x')]
    pairs, problems, _ = find_duplicates(manifest_of(rows), ssim_threshold=0.9, colour_threshold=None)
    linked = set(pairs.image_path_a) | set(pairs.image_path_b)
    assert linked == {'rgb.png', 'gray_small.png', 'palette.gif', 'cmyk.jpg', 'rgba_big.png'} and problems.empty
    # with the colour check (the default) the greyscale copy is a recolouring: kept apart, the other modes still match
    pairs = find_duplicates(manifest_of(rows), ssim_threshold=0.9).pairs
    assert set(pairs.image_path_a) | set(pairs.image_path_b) == {'rgb.png', 'palette.gif', 'cmyk.jpg', 'rgba_big.png'}

def test_unreadable_files_are_reported_and_left_out(tmp_path):
    im = drawing(8)
    rows = [(save(im, tmp_path/'a.png'), 'x'), (save(im, tmp_path/'b.png', compress_level=1), 'x'), (tmp_path/'broken.png', 'x'),
            (tmp_path/'gone.png', 'y')]
    (tmp_path/'broken.png').write_bytes(b'\x89PNG\r\n\x1a\n' + b'\0' * 20)
    pairs, problems, _ = find_duplicates(manifest_of(rows))
    assert sorted(problems.image_path) == ['broken.png', 'gone.png']
    assert problems.problem.str.contains('broken.png|gone.png').all()
    assert set(pairs.image_path_a) | set(pairs.image_path_b) == {'a.png', 'b.png'}

@pytest.mark.parametrize('kwargs,name', [(dict(ssim_threshold=1.2), 'ssim_threshold'), (dict(cosine_threshold=-0.5), 'cosine_threshold'),
                                         (dict(ssim_threshold=float('nan')), 'ssim_threshold'), (dict(cosine_threshold='high'), 'cosine_threshold')])
def test_thresholds_outside_0_1(tmp_path, kwargs, name):
    rows = [(save(drawing(1), tmp_path/'a.png'), 'x')]
    with pytest.raises(DataError, match=f'{name}=.*between 0 and 1'): find_duplicates(manifest_of(rows), **kwargs)

def test_bad_flips_and_policy(tmp_path):
    rows = [(save(drawing(1), tmp_path/'a.png'), 'x')]
    with pytest.raises(DataError, match='views='): find_duplicates(manifest_of(rows), views=('h',))
    with pytest.raises(DataError, match='conflict_policy='): propose_decisions(manifest_of(rows), find_duplicates(manifest_of(rows))[0], 'vote')


# ---------------------------------------------------------------- search in bounded memory
def test_block_search_matches_dense_with_tiny_blocks():
    x = np.random.default_rng(3).normal(size=(3000, 32)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    x[2999] = x[5]; x[1234] = x[77]
    dense = x @ x.T
    expected = {(i, j) for i, j in zip(*np.nonzero(np.triu(dense, 1) >= 0.7), strict=True)}
    blocks = cosine_pairs(x, 0.7, memory_mb=0.05) # ~1 row per block
    assert set(zip(blocks.a, blocks.b, strict=True)) == expected and (5, 2999) in expected

def test_flip_views_in_cosine_search():
    base = np.random.default_rng(4).normal(size=(2, 4, 10)).astype(np.float32)
    base /= np.linalg.norm(base, axis=-1, keepdims=True)
    x = np.concatenate([base, base[:1, [1, 0, 3, 2]]]) # image 2 is image 0 mirrored: its views are permuted
    pairs = cosine_pairs(x, 0.999)
    assert pairs[['a', 'b', 'view']].values.tolist() == [[0, 2, 1]]


# ---------------------------------------------------------------- decisions
def test_decisions_drive_groups_and_folds_and_never_touch_files(tmp_path):
    root = clipart_slice(tmp_path/'d', 4, evil=None)
    train = pd.read_csv(root/'train.csv')
    a, b = train.class_name.unique()[:2]
    src = train[train.class_name == a].image_path.iloc[0]
    shutil.copy(root/src, root/'train'/b/'copied.png')                                        # cross-class copy
    ImageOps.mirror(Image.open(root/src)).save(root/'train'/a/'mirrored.png')                 # within-class mirror
    with open(root/'train.csv', 'a') as f:
        f.write(f'{b},train/{b}/copied.png,{train[train.class_name == b].target.iloc[0]}\n')
        f.write(f'{a},train/{a}/mirrored.png,{train[train.class_name == a].target.iloc[0]}\n')
    before = tree_state(root)
    manifest, _ = load_data(root)
    pairs = find_duplicates(manifest).pairs
    for policy, kept_classes in [('drop_all', []), ('keep_all', sorted([a, b])), ('majority', [a])]:
        decisions = propose_decisions(manifest, pairs, policy)
        cluster = decisions[decisions.image_path == src].cluster.iloc[0]
        members = decisions[decisions.cluster == cluster]
        assert set(members.image_path) == {src, f'train/{b}/copied.png', f'train/{a}/mirrored.png'}
        assert members.review.all() and sorted(members[members.action == 'keep'].class_name) == kept_classes
        kept = set(members[members.action == 'keep'].image_path)
        cleaned = assign_folds(apply_decisions(manifest, decisions), n_folds=3)
        survivors = cleaned[cleaned.image_path.isin(members.image_path)]
        assert set(survivors.image_path) == kept and survivors.group.nunique() <= 1 and survivors.fold.nunique() <= 1
    assert tree_state(root) == before

@pytest.fixture(scope='module')
def clipart_proposal():
    "The embedded set's manifest and proposed decisions, searched once for the tests that only read them."
    manifest, _ = load_data(CLIPART)
    return manifest, propose_decisions(manifest, find_duplicates(manifest)[0])

@pytest.mark.parametrize('edit,message', [
    (lambda d: d.assign(action=d.action.where(d.index != 0, 'maybe')), "has 'maybe'"),
    (lambda d: d.drop(columns='action'), 'missing column'),
    (lambda d: pd.concat([d, d.head(1)]), 'more than one decision'),
    (lambda d: d.assign(image_path=d.image_path.where(d.index != 0, 'train/nowhere.png')), 'not in the manifest'),
])
def test_apply_decisions_refuses_bad_csv(tmp_path, clipart_proposal, edit, message):
    manifest, decisions = (x.copy() for x in clipart_proposal)
    edit(decisions).to_csv(tmp_path/'decisions.csv', index=False)
    with pytest.raises(DataError, match=message): apply_decisions(manifest, tmp_path/'decisions.csv')

def test_reviewer_records_choices(tmp_path, clipart_proposal):
    manifest, decisions = (x.copy() for x in clipart_proposal)
    path = tmp_path/'decisions.csv'
    save_decisions(decisions, path)
    reviewer = DuplicateReviewer(path, manifest, only_review=True)
    assert all(decisions[decisions.cluster == c].review.any() for c in reviewer.clusters)
    for toggle in reviewer.toggles: toggle.value = 'keep'
    reviewer.next(); reviewer.toggles[-1].value = 'keep'
    reviewer.save()
    saved = pd.read_csv(path)
    changed = saved[saved.action != saved.proposed]
    assert len(changed) >= 1 and (changed.action == 'keep').all()
    in_force, _ = save_decisions(decisions, path) # a re-run keeps the reviewed file
    assert (in_force.action != in_force.proposed).sum() == len(changed)


# ---------------------------------------------------------------- the notebook
def test_dedup_notebook_finds_cross_class_copies(tmp_path):
    evil = 'evil<b>&"class'
    root = clipart_slice(tmp_path/'d', 3, evil)
    train = pd.read_csv(root/'train.csv')
    other = sorted(set(train.class_name) - {evil})[0]
    src = train[train.class_name == evil].image_path.iloc[0]
    shutil.copy(root/src, root/'train'/other/'copy_from_evil.png')
    with open(root/'train.csv', 'a') as f: f.write(f'{other},train/{other}/copy_from_evil.png,{train[train.class_name == other].target.iloc[0]}\n')
    reports = tmp_path/'reports'
    params = dict(data=str(root), run_name='dedup-test', reports=str(reports), max_clusters=5, flips='flips', colour_threshold=-1)
    run_notebook('dedup.ipynb', tmp_path/'out.ipynb', **params)
    assert '-p flips is deprecated: use -p views' in (tmp_path/'out.ipynb').read_text() # the old name works, and says so
    out = reports/'dedup-test'
    page = (out/'report.html').read_text()
    # every option of the search is saved with the run and shown in its report
    assert json.loads((out/'dedup_config.json').read_text()) == asdict(DedupConfig(views='flips', colour_threshold=None)) # -p flips: views' old name
    assert all(f'>{name}<' in page for name in asdict(DedupConfig()))
    assert unsummarised_sections(page, max_rows=0, max_images=0) == [] # every section opens with its summary
    assert evil not in page and html.escape(evil) in page
    images = re.findall(r'<img [^>]*src="([^"]*)"', page)
    assert images and all(s.startswith('data:image/png;base64,') for s in images)
    decisions = pd.read_csv(out/'decisions.csv')
    conflict = decisions[decisions.image_path == src]
    assert len(conflict) == 1 and conflict.review.iloc[0] and conflict.action.iloc[0] == 'drop'
    cleaned = pd.read_csv(out/'manifest_clean.csv')
    assert src not in set(cleaned.image_path) and len(cleaned) == len(load_data(root)[0]) - (decisions.action == 'drop').sum()
    assert json.loads((out/'metrics.json').read_text())['conflict_clusters'] >= 1
    # the user's edit survives a re-run, and is applied
    decisions.loc[decisions.image_path == src, 'action'] = 'keep'
    decisions.to_csv(out/'decisions.csv', index=False)
    run_notebook('dedup.ipynb', tmp_path/'out2.ipynb', **params)
    assert src in set(pd.read_csv(out/'manifest_clean.csv').image_path)
    assert (out/'decisions-proposed.csv').is_file()


# ---------------------------------------------------------------- crops, rotations, colour, mirror sensitivity, keeper
def _linked(pairs, a, b) -> pd.DataFrame:
    return pairs[((pairs.image_path_a == a) & (pairs.image_path_b == b)) | ((pairs.image_path_a == b) & (pairs.image_path_b == a))]

def _clipart_rows(tmp_path, n=12):
    "n distinct embedded drawings copied into tmp_path, in two classes."
    manifest, _ = load_data(CLIPART)
    files = manifest.drop_duplicates('sha1').file.iloc[:n]
    return [(save(Image.open(f).convert('RGB'), tmp_path/f'orig{i}.png'), 'ab'[i % 2]) for i, f in enumerate(files)]

def test_crop_and_rotation_are_found_and_mirror_sensitivity_is_an_option(tmp_path):
    rows = _clipart_rows(tmp_path)
    im = Image.open(rows[0][0]); w, h = im.size
    rows.append((save(im.crop((int(w * .1), int(h * .1), int(w * .9), int(h * .9))), tmp_path/'crop.png'), 'a')) # 80 % of the side
    rows.append((save(im.transpose(Image.Transpose.ROTATE_90), tmp_path/'rot.png'), 'a'))
    rows.append((save(im.transpose(Image.Transpose.FLIP_LEFT_RIGHT), tmp_path/'mirror.png'), 'a'))
    m = manifest_of(rows)
    pairs = find_duplicates(m).pairs
    crop, rot, mirror = (_linked(pairs, 'orig0.png', f) for f in ('crop.png', 'rot.png', 'mirror.png'))
    assert len(crop) == 1 and crop.method.iloc[0] == 'geometric' and 'crop' in crop.match.iloc[0]
    assert len(rot) and all('rotated' in x for x in rot.match) # found by SSIM and by cosine, under a quarter turn
    assert len(mirror) and all('mirror' in x for x in mirror.match)
    copies = {'crop.png', 'rot.png', 'mirror.png'}
    touching = pairs[pairs.image_path_a.isin(copies) | pairs.image_path_b.isin(copies)]
    assert set(touching.image_path_a) | set(touching.image_path_b) <= copies | {'orig0.png'} # the copies link to nothing else
    assert find_duplicates(m, geometric=False)[0].pipe(_linked, 'orig0.png', 'crop.png').empty # the crop needs the geometric path
    strict = find_duplicates(m, views='none').pairs
    assert _linked(strict, 'orig0.png', 'mirror.png').empty and _linked(strict, 'orig0.png', 'rot.png').empty
    assert len(_linked(strict, 'orig0.png', 'crop.png')) == 1 # a crop is orientation-preserving
    no_rotation = find_duplicates(m, views='flips').pairs
    assert _linked(no_rotation, 'orig0.png', 'rot.png').empty and len(_linked(no_rotation, 'orig0.png', 'mirror.png'))

def test_recoloured_variant_is_kept_apart_unless_colour_is_ignored(tmp_path):
    rows = _clipart_rows(tmp_path, 6)
    im = np.asarray(Image.open(rows[0][0]).convert('RGB'))
    rows.append((save(Image.fromarray(im[..., ::-1].copy()), tmp_path/'swapped.png'), 'a'))
    m = manifest_of(rows)
    pairs, _, scored = find_duplicates(m)
    assert _linked(pairs, 'orig0.png', 'swapped.png').empty
    assert (~scored.colour_ok).any()
    loose = find_duplicates(m, colour_threshold=None).pairs
    assert 'recolour' in _linked(loose, 'orig0.png', 'swapped.png').match.iloc[0]

def test_keeper_is_the_best_file(tmp_path):
    im = drawing(11, (200, 150))
    rows = [(save(im.convert('CMYK'), tmp_path/'a_cmyk.jpg'), 'x'), (save(im, tmp_path/'b_original.png'), 'x'),
            (save(im.resize((100, 75)), tmp_path/'c_small.png'), 'x'), (save(drawing(12), tmp_path/'d_other.png'), 'x')]
    im.save(tmp_path/'e_lossy.jpg', quality=40); rows.append((tmp_path/'e_lossy.jpg', 'x'))
    m = manifest_of(rows)
    decisions = propose_decisions(m, find_duplicates(m)[0], within_policy='drop', min_class_images=0, min_class_share=0)
    kept = decisions[decisions.action == 'keep']
    assert kept.image_path.tolist() == ['b_original.png'], decisions[['image_path', 'action', 'reason']]
    assert 'PNG' in kept.reason.iloc[0] and '200×150' in kept.reason.iloc[0]
    assert set(decisions.image_path) == {'a_cmyk.jpg', 'b_original.png', 'c_small.png', 'e_lossy.jpg'}

def gradient(rgb, size=(120, 90), vertical=False) -> Image.Image:
    "A smooth gradient from white to `rgb`: almost no edges, the kind of picture a grey 32 px thumbnail cannot tell apart."
    ramp = np.linspace(0, 1, size[1] if vertical else size[0], dtype=np.float32)
    ramp = ramp[:, None, None] if vertical else ramp[None, :, None]
    pixels = 255 - ramp * (255 - np.float32(rgb))
    return Image.fromarray(np.broadcast_to(pixels, (size[1], size[0], 3)).round().astype(np.uint8))

def test_low_structure_pictures_do_not_chain(tmp_path):
    """Gradients of other colours, blank pages of other colours and faint drawings link only to their own copies: no
    cluster spans two gradients of different colours, and no class is emptied (the embedded set's failure)."""
    colours = {'pink': (230, 80, 150), 'green': (60, 160, 60), 'plum': (140, 70, 140), 'gold': (240, 190, 40),
               'blue': (60, 90, 220), 'grey': (128, 128, 128)}
    rows = [(save(gradient(rgb), tmp_path/f'g_{name}.png'), 'gradients') for name, rgb in colours.items()]
    rows += [(save(gradient(colours['pink']), tmp_path/'g_pink_again.png', compress_level=1), 'gradients')]
    rows += [(save(Image.new('RGB', (90, 90), c), tmp_path/f'blank_{c}.png'), 'blanks') for c in ('white', 'black', 'red')]
    rows += [(save(Image.new('RGB', (90, 90), 'white'), tmp_path/'blank_white_again.png', compress_level=1), 'bulbs')]
    rows += [(save(drawing(i), tmp_path/f'd{i}.png'), 'drawings') for i in range(6)]
    m = manifest_of(rows)
    pairs = find_duplicates(m).pairs
    linked = {frozenset(p) for p in zip(pairs.image_path_a, pairs.image_path_b, strict=True)}
    assert linked == {frozenset(('g_pink.png', 'g_pink_again.png')), frozenset(('blank_white.png', 'blank_white_again.png'))}
    assert pairs.low_structure.all() # both links passed the low-structure check
    decisions = propose_decisions(m, pairs)
    colour_of = lambda p: p.removesuffix('.png').removesuffix('_again').split('_')[-1]
    gradients = decisions[decisions.image_path.str.startswith('g_')]
    assert gradients.groupby('cluster').image_path.apply(lambda s: s.map(colour_of).nunique()).max() == 1
    assert (apply_decisions(m, decisions).class_name.value_counts().reindex(m.class_name.unique()) > 0).all()

def test_bad_colour_threshold_and_min_ncc(tmp_path):
    rows = _clipart_rows(tmp_path, 3)
    with pytest.raises(DataError, match='colour_threshold='): find_duplicates(manifest_of(rows), colour_threshold=-1)
    with pytest.raises(DataError, match='min_ncc='): find_duplicates(manifest_of(rows), min_ncc=2)
    with pytest.raises(DataError, match='max_changed='): find_duplicates(manifest_of(rows), max_changed=-0.1)
    with pytest.raises(DataError, match='views='): find_duplicates(manifest_of(rows), views='sideways')
