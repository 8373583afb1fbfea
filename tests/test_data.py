"The data layer on every kind of bad input the foundation issue lists, and on good input of every image mode."
import re
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import CLIPART, reported, save, tree_state, write_competition, write_competition_as_shipped
from PIL import Image

from dogcls.core import DataError
from dogcls.data import (
    assign_folds,
    class_names,
    classes_missing_from_training,
    exact_duplicates,
    load_data,
    open_image,
    scan_image,
)
from dogcls.loader import ImageCache, ImageDataset


# ---------------------------------------------------------------- image modes
def _exif_rotated(path):
    exif = Image.new('RGB', (1, 1)).getexif(); exif[0x0112] = 8 # rotated 270 degrees
    return save(Image.new('RGB', (40, 10), (0, 0, 255)), path, exif=exif)

@pytest.mark.parametrize('name,make,pixel', [
    ('gray.png', lambda p: save(Image.new('L', (9, 9), 100), p), (100, 100, 100)),
    ('bilevel.png', lambda p: save(Image.new('1', (9, 9), 1), p), (255, 255, 255)),
    ('palette.gif', lambda p: save(Image.new('P', (9, 9), 3), p), None),
    ('transparent.png', lambda p: save(Image.new('RGBA', (9, 9), (0, 0, 0, 0)), p), (255, 255, 255)),
    ('half.png', lambda p: save(Image.new('RGBA', (9, 9), (0, 0, 0, 128)), p), (127, 127, 127)),
    ('la.png', lambda p: save(Image.new('LA', (9, 9), (0, 0)), p), (255, 255, 255)),
    ('cmyk.jpg', lambda p: save(Image.new('CMYK', (9, 9), (255, 0, 255, 0)), p, quality=100), 'green'),
    ('cmyk.tif', lambda p: save(Image.new('CMYK', (9, 9), (0, 0, 0, 255)), p), (0, 0, 0)),
    ('gray16.png', lambda p: save(Image.fromarray(np.full((9, 9), 32896, np.uint16)), p), (128, 128, 128)),
    ('gray16.tif', lambda p: save(Image.fromarray(np.full((9, 9), 65535, np.uint16)), p), (255, 255, 255)),
    ('photo.webp', lambda p: save(Image.new('RGB', (9, 9), (10, 200, 10)), p, lossless=True), (10, 200, 10)),
    ('exif.jpg', _exif_rotated, None),
])
def test_open_image_modes(tmp_path, name, make, pixel):
    im = open_image(make(tmp_path/name))
    assert im.mode == 'RGB'
    if pixel == 'green': assert im.getpixel((4, 4))[1] > 200 and im.getpixel((4, 4))[0] < 60
    elif pixel: assert np.allclose(im.getpixel((4, 4)), pixel, atol=1)
    if name == 'exif.jpg': assert im.size == (10, 40)

def test_palette_transparency_goes_on_white(tmp_path):
    im = Image.new('P', (4, 4), 0); im.putpalette([0, 0, 0] * 256); im.info['transparency'] = 0
    assert open_image(save(im, tmp_path/'t.png')).getpixel((1, 1)) == (255, 255, 255)

def test_max_side_downscales_keeping_aspect(tmp_path):
    assert open_image(save(Image.new('RGB', (400, 100)), tmp_path/'w.jpg'), max_side=100).size == (100, 25)


# ---------------------------------------------------------------- bad files
def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    bomb = save(Image.new('1', (10_000, 9_000)), tmp_path/'bomb.png') # 90 M pixels in a few kB
    assert bomb.stat().st_size < 100_000
    with pytest.raises(DataError, match=r'bomb\.png: 10000x9000 .* decompression bomb'): open_image(bomb)
    assert scan_image(bomb)['problem'] == 'decompression bomb'

def test_huge_declared_size_beyond_pillows_hard_limit(tmp_path):
    bomb = save(Image.new('1', (20_000, 10_000)), tmp_path/'bomb.png') # 200 M pixels: Pillow itself raises
    with pytest.raises(DataError, match='bomb.png'): open_image(bomb)
    assert scan_image(bomb)['problem'] == 'decompression bomb'

@pytest.mark.parametrize('content,problem,message', [
    (None, 'missing file', 'file not found'),
    (b'', 'zero-byte file', 'truncated or corrupt'),
    (b'hello, not an image', 'not an image', 'not an image'),
])
def test_bad_single_files(tmp_path, content, problem, message):
    path = tmp_path/'x.png'
    if content is not None: path.write_bytes(content)
    assert scan_image(path)['problem'] == problem
    with pytest.raises(DataError, match=re.escape(str(path))): open_image(path)

def test_truncated_png_and_jpeg(tmp_path):
    noise = Image.effect_noise((64, 64), 60).convert('RGB')
    for name in ('t.png', 't.jpg'):
        whole = save(noise, tmp_path/('whole' + name)).read_bytes()
        (tmp_path/name).write_bytes(whole[:len(whole) // 2])
        assert scan_image(tmp_path/name)['problem'].startswith('unreadable'), name
        with pytest.raises(DataError, match='truncated or corrupt'): open_image(tmp_path/name)


# ---------------------------------------------------------------- competition layout
def test_competition_layout_reads_all_columns(competition):
    (competition/'test_labels.csv').write_text('image_path,target\ntest/x0.png,1\n')
    manifest, problems = load_data(competition, n_folds=5)
    assert len(manifest) == 13 and reported(problems).empty
    assert list(manifest.columns[:6]) == ['image_path', 'class_name', 'target', 'group', 'split', 'file']
    test = manifest[manifest.split == 'test'].iloc[0]
    assert (test.target, test.class_name) == (1, 'b')
    assert (manifest.group == manifest.image_path).all() # each image its own group by default

def test_the_competitions_own_layout_loads_as_shipped(tmp_path):
    root = write_competition_as_shipped(tmp_path/'data')
    before = tree_state(root)
    manifest, problems = load_data(root, n_folds=3)
    assert tree_state(root) == before
    assert len(manifest) == 18 and reported(problems).empty
    assert problems.set_index('image_path').problem.to_dict() == {'train.csv': 'image paths: relative to train/',
        'test.csv': 'image paths: relative to test/', 'test_labels.csv': 'image paths: relative to test/'}
    train, test = manifest[manifest.split == 'train'], manifest[manifest.split == 'test']
    assert train.image_path.iloc[0] == 'train/n01443537/sketch_0.JPEG' and test.image_path.iloc[0] == 'test/0.JPEG'
    assert all((root/p).is_file() for p in manifest.image_path) and (manifest.file == [str(root/p) for p in manifest.image_path]).all()
    assert test.target.tolist() == [i % 2 for i in range(6)] # labels joined through the test/-relative test_labels.csv

def test_root_relative_and_train_relative_give_the_same_manifest(tmp_path):
    shipped = write_competition_as_shipped(tmp_path/'a')
    other = write_competition_as_shipped(tmp_path/'b')
    for name, folder in (('train.csv', 'train'), ('test.csv', 'test'), ('test_labels.csv', 'test')):
        table = pd.read_csv(other/name, dtype=str)
        table['image_path'] = folder + '/' + table.image_path
        table.to_csv(other/name, index=False)
    a, b = load_data(shipped, n_folds=3)[0], load_data(other, n_folds=3)[0]
    assert a.drop(columns='file').equals(b.drop(columns='file'))

def test_a_csv_mixing_conventions_is_refused_with_examples_of_each(tmp_path):
    root = write_competition_as_shipped(tmp_path/'data')
    rows = (root/'train.csv').read_text().splitlines()
    rows[-2:] = [','.join([c, 'train/' + path, t]) for c, path, t in (r.split(',') for r in rows[-2:])]
    (root/'train.csv').write_text('\n'.join(rows) + '\n')
    with pytest.raises(DataError, match='train.csv mixes two path conventions: 10 rows are relative to train/') as e: load_data(root)
    assert "'n01443537/sketch_0.JPEG'" in str(e.value) and "'train/n01484850/sketch_4.JPEG'" in str(e.value)

@pytest.mark.parametrize('wrong', ['parent', 'images-missing'])
def test_a_wrong_root_gives_one_clear_error(tmp_path, wrong):
    root = write_competition_as_shipped(tmp_path/'data')
    if wrong == 'parent': # the CSVs copied one level up, the images left where they are
        for name in ('train.csv', 'test.csv'): (tmp_path/name).write_text((root/name).read_text())
        root = tmp_path
    else:
        shutil.rmtree(root/'train')
    with pytest.raises(DataError) as e: load_data(root)
    message = str(e.value)
    assert 'train.csv: only 0 of the 12 image paths checked resolve' in message
    assert "'n01443537/sketch_0.JPEG'" in message and str(root/'train') in message
    assert message.count('\n- ') == (2 if wrong == 'parent' else 1) # test.csv resolves when only train/ is missing

def test_every_structural_problem_of_every_csv_in_one_error(tmp_path):
    root = write_competition(tmp_path/'d', extra_train_rows=['a,../../etc/passwd,0', 'b,train/a/a0.png,1', 'a,train/a/a1.png,x'])
    (root/'test.csv').write_text('image_path\n/etc/hosts\n')
    (root/'test_labels.csv').write_text('image_path,target\ntest/x0.png,9\n')
    with pytest.raises(DataError) as e: load_data(root)
    message = str(e.value)
    assert '5 problem(s) in the CSVs' in message
    for kind in ('train.csv: target must be a whole number', 'train.csv: image_path must be', 'different labels',
                 'test.csv: image_path must be', 'test_labels.csv: targets [9] do not occur'):
        assert kind in message, kind

def test_unlabelled_test_rows(competition):
    manifest, _ = load_data(competition)
    assert manifest[manifest.split == 'test'].target.tolist() == [-1]

def test_every_bad_file_is_skipped_and_reported_and_nothing_changes(tmp_path):
    root = write_competition(tmp_path/'d', extra_train_rows=['a,train/a/gone.png,0', 'a,train/a/empty.png,0',
        'a,train/a/trunc.png,0', 'b,train/b/notes.png,1', 'b,train/b/bomb.png,1', 'a,train/a/a0.png,0'])
    (root/'train/a/empty.png').write_bytes(b'')
    whole = save(Image.effect_noise((64, 64), 60), tmp_path/'n.png').read_bytes()
    (root/'train/a/trunc.png').write_bytes(whole[:300])
    (root/'train/b/notes.png').write_text('meeting notes')
    save(Image.new('1', (10_000, 9_000)), root/'train/b/bomb.png')
    before = tree_state(root)
    manifest, problems = load_data(root, n_folds=5)
    assert tree_state(root) == before
    assert len(manifest) == 13
    skipped = problems[problems.action == 'skipped'].set_index('image_path').problem
    assert skipped['train/a/gone.png'] == 'missing file'
    assert skipped['train/a/empty.png'] == 'zero-byte file'
    assert skipped['train/a/trunc.png'].startswith('unreadable')
    assert skipped['train/b/notes.png'] == 'not an image'
    assert skipped['train/b/bomb.png'] == 'decompression bomb'
    assert skipped['train/a/a0.png'] == 'duplicate row'
    assert problems.fix.str.len().gt(10).all() # every problem says how to fix it
    with pytest.raises(DataError, match=r'6 unusable file\(s\)'): load_data(root, errors='raise')

@pytest.mark.parametrize('rows,message', [
    (['a,train/b/b0.png,1'], "each class_name must have one target, but 'a'"),
    (['c,train/a/a1.png,0'], "each target must have one class_name"),
    (['b,train/a/a0.png,1'], 'the same image is listed with different labels'),
    (['a,../../etc/passwd,0'], r"stays inside the data folder .*'../../etc/passwd'"),
    (['a,/etc/passwd,0'], 'stays inside'),
    (['a,train/../../outside.png,0'], 'stays inside'),
    (['a,train/a/a0.png,1.5'], 'whole number'),
    (['a,train/a/a0.png,-1'], 'whole number'),
])
def test_csv_mistakes_are_errors_naming_the_row(tmp_path, rows, message):
    root = write_competition(tmp_path/'d', extra_train_rows=rows)
    with pytest.raises(DataError, match=message) as e: load_data(root)
    assert 'train.csv' in str(e.value) and 'row ' in str(e.value)

def test_missing_columns_and_files(tmp_path, competition):
    (competition/'train.csv').write_text('label,path\na,x.png\n')
    with pytest.raises(DataError, match='missing column'): load_data(competition)
    with pytest.raises(DataError, match='data folder not found'): load_data(tmp_path/'nowhere')
    (tmp_path/'empty').mkdir()
    with pytest.raises(DataError, match='no images found'): load_data(tmp_path/'empty')
    with pytest.raises(DataError, match="layout='zip'"): load_data(competition, layout='zip')

def test_test_label_problems(competition):
    (competition/'test_labels.csv').write_text('image_path,target\ntest/x0.png,7\n')
    with pytest.raises(DataError, match='do not occur in train.csv'): load_data(competition)
    (competition/'test_labels.csv').write_text('image_path,target\ntest/x0.png,0\ntest/zz.png,1\n')
    _, problems = load_data(competition)
    assert reported(problems).problem.tolist() == ['test label for an image not in test.csv']

def test_image_in_train_and_test_is_reported(tmp_path):
    root = write_competition(tmp_path/'d', test_files=())
    (root/'test.csv').write_text('image_path\ntrain/a/a0.png\n')
    _, problems = load_data(root)
    assert reported(problems).problem.tolist() == ['listed in both train.csv and test.csv']

def test_empty_class_keeps_its_target_slot(tmp_path):
    root = write_competition(tmp_path/'d', classes=('a', 'b', 'c'), extra_train_rows=[])
    rows = (root/'train.csv').read_text().splitlines()
    (root/'train.csv').write_text('\n'.join([r for r in rows if not r.startswith('b,')] + ['b,train/b/gone.png,1']) + '\n')
    manifest, problems = load_data(root)
    assert 'class without usable training images' in problems.problem.tolist()
    assert class_names(manifest) == ['a', '<target 1>', 'c']

def test_classes_with_fewer_images_than_folds_are_reported(tmp_path):
    root = write_competition(tmp_path/'d', per_class=3)
    _, problems = load_data(root, n_folds=5)
    assert reported(problems).problem.tolist() == ['fewer training images than folds: 3 < 5'] * 2
    assert reported(load_data(root, n_folds=3)[1]).empty


# ---------------------------------------------------------------- ImageFolder layout
def test_image_folder_layout(tmp_path):
    root = tmp_path/'tree'
    for c, n in [('cat', 3), ('dog', 2)]:
        for i in range(n): save(Image.new('RGB', (8, 8), (i, 0, 0)), root/c/f'{i}.jpg')
    save(Image.new('RGB', (8, 8)), root/'dog'/'nested'/'deep.png') # subfolders belong to the class
    (root/'cat'/'.DS_Store').write_bytes(b'\0\0')
    (root/'empty').mkdir()
    save(Image.new('RGB', (8, 8)), root/'loose.png')
    before = tree_state(root)
    manifest, problems = load_data(root, n_folds=2)
    assert tree_state(root) == before
    assert manifest.groupby('class_name').size().to_dict() == {'cat': 3, 'dog': 3}
    assert manifest.groupby('class_name').target.first().to_dict() == {'cat': 0, 'dog': 1}
    assert (manifest.split == 'train').all()
    assert sorted(problems.problem) == ['empty class folder', 'not an image file', 'outside any class folder']


# ---------------------------------------------------------------- folds
def test_folds_keep_groups_together_and_are_seeded():
    manifest, _ = load_data(CLIPART)
    manifest['group'] = manifest.image_path.str.replace(r'\d', '', regex=True) # coarse groups across images
    a, b = assign_folds(manifest, 5, seed=1), assign_folds(manifest, 5, seed=1)
    assert a.fold.tolist() == b.fold.tolist()
    assert a.fold.tolist() != assign_folds(manifest, 5, seed=2).fold.tolist()
    train = a[a.split == 'train']
    assert train.groupby('group').fold.nunique().max() == 1
    sizes = train.fold.value_counts()
    assert sizes.min() > 0.6 * sizes.max() # roughly balanced

def test_rare_classes_are_spread_not_crashing():
    manifest = pd.DataFrame(dict(split='train', target=[0] * 10 + [1], class_name=['a'] * 10 + ['b'],
                                 group=range(11), image_path=[str(i) for i in range(11)]))
    with_folds = assign_folds(manifest, n_folds=5)
    assert with_folds.fold.between(0, 4).all()
    missing = classes_missing_from_training(with_folds)
    assert missing.class_name.tolist() == ['b'] and len(missing) == 1

def test_fold_errors():
    manifest = pd.DataFrame(dict(split='train', target=[0, 1, 0], class_name=list('aba'), group=[1, 1, 2]))
    with pytest.raises(DataError, match='2 groups of training images cannot fill 3 folds'): assign_folds(manifest, 3)
    with pytest.raises(DataError, match='n_folds=1'): assign_folds(manifest, 1)
    with pytest.raises(DataError, match="no 'cluster' column"): assign_folds(manifest, 2, group_col='cluster')
    with pytest.raises(DataError, match='have no'): assign_folds(manifest.assign(group=[1, None, 2]), 2)


# ---------------------------------------------------------------- datasets and cache
def test_cache_serves_later_epochs_without_decoding(competition):
    manifest, _ = load_data(competition)
    cache = ImageCache(budget_mb=16)
    ds = ImageDataset(manifest, cache=cache)
    for _epoch in range(3):
        for i in range(len(ds)): ds[i]
        assert cache.misses == len(ds) # only the first epoch decoded
    assert cache.hits == 2 * len(ds)

def test_cache_budget_is_respected(competition):
    manifest, _ = load_data(competition)
    one_image = 16 * 12 * 3
    cache = ImageCache(budget_mb=2.5 * one_image / 2**20).preload(manifest.file)
    assert len(cache.images) == 2 and cache.nbytes <= cache.budget

def test_datamodule_folds_and_workers(competition):
    from dogcls.config import DataConfig
    from dogcls.loader import ImageDataModule
    manifest, _ = load_data(competition)
    dm = ImageDataModule(manifest, fold=0, data=DataConfig(folds=3, batch_size=4, num_workers=1), img_size=8)
    dm.setup()
    assert len(dm.cache.images) == len(manifest) # preloaded before the worker forks
    assert not set(dm.train_rows.image_path) & set(dm.val_rows.image_path)
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 3, 8, 8) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert len(dm.test_rows) == 1
    with pytest.raises(DataError, match='fold=3 does not exist'): ImageDataModule(manifest, fold=3, data=DataConfig(folds=3)).setup()


# ---------------------------------------------------------------- the embedded data set
def test_embedded_clipart_matches_its_recipe():
    import json
    summary = json.loads((CLIPART/'build.json').read_text())
    train, test = pd.read_csv(CLIPART/'train.csv'), pd.read_csv(CLIPART/'test_labels.csv')
    per_class = pd.concat([train.target, test.target]).value_counts()
    assert per_class.min() >= 10 and per_class.max() <= 30
    assert (summary['classes'], summary['images']) == (train.target.nunique(), len(train) + len(test))
    assert abs(len(test) / (len(train) + len(test)) - 1 / 3) < 0.02
    assert summary['files_shared_across_classes'] > 0 and summary['skipped_decompression_bombs'] > 0
    size = sum(p.stat().st_size for p in CLIPART.rglob('*') if p.is_file())
    assert size < 25 * 2**20
    assert all(max(Image.open(CLIPART/p).size) <= 128 for p in train.image_path.sample(50, random_state=0))
    dups = exact_duplicates(load_data(CLIPART)[0])
    assert dups.across_classes.sum() > 0
