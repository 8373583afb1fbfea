"Offline transforms, the writer, online policies, the leak audit and the leakage notebook."
import json
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from conftest import CLIPART, clipart_slice, run_notebook, tree_state
from PIL import Image

from dogcls.augment import (
    OFFLINE,
    POLICIES,
    apply_spec,
    attach_copies,
    augmentation_gallery,
    leak_audit,
    leakage_arms,
    parse_spec,
    train_transform,
    write_offline,
)
from dogcls.core import DataError
from dogcls.data import assign_folds, load_data
from dogcls.report import unsummarised_sections


@pytest.fixture(scope='module')
def images():
    rng = np.random.default_rng(0)
    drawing = np.full((96, 128, 3), 255, np.uint8); drawing[20:70, 30:90] = (200, 30, 30); drawing[40:45, :] = 0
    return {'drawing': drawing, 'noise': rng.integers(0, 256, (64, 64, 3), dtype=np.uint8),
            'tiny': rng.integers(0, 256, (5, 7, 3), dtype=np.uint8), 'white': np.full((32, 32, 3), 255, np.uint8)}


@pytest.mark.parametrize('name', list(OFFLINE))
def test_offline_transforms_keep_shape_dtype_range_and_are_seeded(images, name):
    for image in images.values():
        out = OFFLINE[name](image.copy(), seed=5)
        assert out.shape == image.shape and out.dtype == np.uint8 and 0 <= out.min() and out.max() <= 255
        assert np.array_equal(out, OFFLINE[name](image.copy(), seed=5))

def test_random_transforms_differ_with_the_seed(images):
    img = images['drawing']
    assert not np.array_equal(OFFLINE['noise'](img, seed=1), OFFLINE['noise'](img, seed=2))
    assert not np.array_equal(OFFLINE['motion_blur'](img, seed=1), OFFLINE['motion_blur'](img, seed=2)) # random angle

def test_transforms_do_what_they_say(images):
    img = images['drawing']
    edges = OFFLINE['canny'](img)
    assert set(np.unique(edges)) <= {0, 255} and (edges == 255).mean() > 0.8 # dark lines on white
    assert (OFFLINE['morphology'](img, op='erode', kernel=5) <= img).all()
    assert (OFFLINE['morphology'](img, op='dilate', kernel=5) >= img).all()
    assert OFFLINE['blur'](img, sigma=3).astype(float).std() < img.astype(float).std()
    assert np.array_equal(OFFLINE['blur'](images['white']), images['white'])
    assert abs(OFFLINE['noise'](np.full((64, 64, 3), 128, np.uint8), sigma=10).astype(float).std() - 10) < 1

def test_transforms_survive_single_threaded_opencv():
    "cv2.Canny overruns its heap when OpenCV runs serially (card backs of the clipart set); ours must not abort."
    script = ("import cv2, numpy as np; cv2.setNumThreads(1)\n"
              "from dogcls.augment import OFFLINE; from dogcls.data import load_data, open_image\n"
              "m = load_data(%r)[0]\n"
              "for f in m.file[m.split == 'train']:\n"
              "    img = np.asarray(open_image(f))\n"
              "    for name, t in OFFLINE.items(): assert t(img, seed=1).shape == img.shape, (f, name)\n"
              "print('checked', (m.split == 'train').sum())" % str(CLIPART))
    done = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and 'checked' in done.stdout, done.stderr[-2000:]

def test_specs_compose_and_refuse_mistakes(images):
    composed = apply_spec(images['drawing'], 'blur(sigma=2)+canny', seed=1)
    assert np.array_equal(composed, OFFLINE['canny'](OFFLINE['blur'](images['drawing'], sigma=2)))
    with pytest.raises(DataError, match='use one of canny, morphology, noise, blur, motion_blur'): parse_spec('jpeg')
    with pytest.raises(DataError, match='has no argument size'): parse_spec('blur(size=3)')
    with pytest.raises(DataError, match="op='melt'"): apply_spec(images['drawing'], 'morphology(op="melt")')


def test_writer_groups_idempotence_and_no_overwrite(tmp_path):
    root = clipart_slice(tmp_path/'data', 3, evil=None)
    manifest, _ = load_data(root)
    before = tree_state(root)
    out = tmp_path/'copies'
    copies = write_offline(manifest, out, ['canny', 'noise(sigma=5)'])
    train = manifest[manifest.split == 'train']
    assert len(copies) == 2 * len(train) and (copies.split == 'train').all()
    assert (copies.set_index('source').group.groupby(level=0).first() == train.set_index('image_path').group).all()
    assert set(copies['transform']) == {'canny', 'noise(sigma=5)'} and (out/'manifest.csv').is_file()
    assert tree_state(root) == before # the data folder is untouched
    written = tree_state(out)
    again = write_offline(manifest, out, ['canny', 'noise(sigma=5)'])
    assert tree_state(out) == written and again.image_path.tolist() == copies.image_path.tolist() # idempotent
    with pytest.raises(DataError, match='other settings'): write_offline(manifest, out, ['canny'])
    with pytest.raises(DataError, match='other settings'): write_offline(manifest, out, ['canny', 'noise(sigma=5)'], seed=1)
    with pytest.raises(DataError, match='overlaps the data folder'): write_offline(manifest, root/'train'/'aug', ['canny'])
    with pytest.raises(DataError, match='overlaps the data folder'): write_offline(manifest, tmp_path, ['canny'])
    (tmp_path/'foreign').mkdir(); (tmp_path/'foreign'/'notes.txt').write_text('mine')
    with pytest.raises(DataError, match='not made by write_offline'): write_offline(manifest, tmp_path/'foreign', ['canny'])
    assert (tmp_path/'foreign'/'notes.txt').read_text() == 'mine'

def test_writer_adds_missing_copies_for_new_sources(tmp_path):
    root = clipart_slice(tmp_path/'data', 2, evil=None)
    manifest, _ = load_data(root)
    first = write_offline(manifest.iloc[:5], tmp_path/'copies', ['blur'])
    both = write_offline(manifest, tmp_path/'copies', ['blur'])
    assert set(first.image_path) < set(both.image_path) and len(both) == (manifest.split == 'train').sum()

def test_copies_follow_their_source_into_one_fold(tmp_path):
    root = clipart_slice(tmp_path/'data', 3, evil=None)
    manifest, _ = load_data(root)
    write_offline(manifest, tmp_path/'copies', ['canny', 'blur'])
    both, left_out = attach_copies(manifest, tmp_path/'copies'/'manifest.csv')
    assert left_out == 0
    folded = assign_folds(both, 3)
    train = folded[folded.split == 'train']
    source_of = train.source.fillna(train.image_path)
    assert train.groupby(source_of.to_numpy()).fold.nunique().max() == 1

def test_leak_audit_counts_constructed_leaks_and_zero_for_a_clean_split(tmp_path):
    root = clipart_slice(tmp_path/'data', 3, evil=None)
    manifest, _ = load_data(root)
    manifest['sha1'] = manifest.image_path # no exact duplicates in this test
    copies = write_offline(manifest, tmp_path/'copies', ['canny'])
    arms = leakage_arms(manifest, copies.assign(sha1=copies.image_path), n_folds=3, seed=0)
    assert len(leak_audit(arms['a'])) == 0 and len(leak_audit(arms['c'])) == 0
    leaks = leak_audit(arms['b'])
    assert len(leaks) > 0 and (leaks.reason == 'same group').all()
    for r in leaks.itertuples(): # every reported leak is real: the partner is in training, with the same group
        fold = arms['b'].set_index('image_path')
        assert fold.fold[r.partner] != r.fold and fold.group[r.partner] == fold.group[r.image_path]
    clean = arms['c'].copy()
    a, b = clean[clean.fold == 0].image_path.iloc[0], clean[clean.fold == 1].image_path.iloc[0]
    near = leak_audit(clean, pd.DataFrame(dict(image_path_a=[a], image_path_b=[b])))
    assert sorted(near.image_path) == sorted([a, b]) and (near.reason == 'near-duplicate').all()


def test_online_policies(tmp_path):
    config = dict(input_size=(3, 48, 48), mean=(0.5,) * 3, std=(0.5,) * 3)
    im = Image.fromarray(np.random.default_rng(0).integers(0, 256, (80, 100, 3), dtype=np.uint8))
    for policy in list(POLICIES) + ['randaugment+hflip+vflip', 'trivialaugment+vflip', 'rand-m5-n1', 'augmix-m3-w2', 'v0']:
        assert train_transform(config, policy)(im).shape == (3, 48, 48)
    with pytest.raises(DataError, match='choose from none, randaugment, autoaugment, trivialaugment, hflip, vflip'):
        train_transform(config, 'randaugment+mosaic')

def test_gallery_shows_every_transform_and_policy():
    manifest, _ = load_data(CLIPART)
    fig = augmentation_gallery(manifest.file[:2], specs=['canny', 'blur'], policies=['hflip', 'trivialaugment'])
    assert len(fig.axes) == 2 * 5 and fig.axes[1].get_title() == 'offline: canny'


def test_leakage_notebook_on_a_slice(tmp_path):
    root = clipart_slice(tmp_path/'data', 4, evil=None)
    reports = tmp_path/'reports'
    run_notebook('augment.ipynb', tmp_path/'out.ipynb', data=str(root), reports=str(reports), run_name='leak-test', specs=['canny', 'blur'],
                                        arch='convnextv2', img_size=32, epochs=1, batch_size=8, limit_batches=2, gallery_images=2)
    out = reports/'leak-test'
    arms = json.loads((out/'metrics.json').read_text())['arms']
    audit = {a['arm'][0]: a['leak audit (validation images with their group or an exact duplicate in training)'] for a in arms}
    assert audit['a'] == 0 and audit['c'] == 0 and audit['b'] > 0
    assert arms[1]['training rows'] == arms[2]['training rows'] == 3 * arms[0]['training rows']
    page = (out/'report.html').read_text()
    assert unsummarised_sections(page, max_rows=0, max_images=0) == [] # every section opens with its summary
    assert 'validation - test gap' in page and len(re.findall(r'<img [^>]*src="data:image/png;base64,', page)) >= 2
