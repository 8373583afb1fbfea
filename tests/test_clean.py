"""Label issues, outliers and train-test shift end to end: the clean notebook on a trained run, its (edited) decisions
applied by training, adversarial validation on a shifted test set, and the clear errors of bad input."""
import json

import numpy as np
import pandas as pd
import pytest
from conftest import CLIPART, clipart_slice, tree_state
from conftest import run_notebook as run
from PIL import Image, ImageOps

from dogcls.clean import adversarial_validation, label_issues, runs_oof
from dogcls.core import DataError
from dogcls.data import load_data
from dogcls.dedup import embed
from dogcls.report import unsummarised_sections
from dogcls.run import Run
from dogcls.sections.train import test_like_rows as most_test_like_rows
from dogcls.train import train_kfold

EVIL = 'evil<b>&"class'


def test_clean_notebook_then_training_with_its_edited_decisions(tmp_path):
    root = clipart_slice(tmp_path/'data', 3, evil=EVIL)
    before = tree_state(root)
    reports = tmp_path/'reports'
    common = dict(data=str(root), reports=str(reports))
    smoke = dict(size='cpu', img_size=32, epochs=1, folds=2, batch_size=8, limit_batches=2, gallery=2)
    run('train.ipynb', tmp_path/'train.ipynb', **common, **smoke, arch='resnet', run_name='base')
    run('clean.ipynb', tmp_path/'clean.ipynb', **common, runs='["base"]', run_name='clean', backend='pixels', k=3, retrain=True)
    out = reports/'clean'
    split = pd.read_csv(reports/'base'/'folds.csv')
    train_paths = set(split.image_path[split.split == 'train'])
    issues = pd.read_csv(out/'label_issues.csv', keep_default_na=False)
    assert set(issues.image_path) == train_paths and issues['rank'].tolist() == list(range(1, len(issues) + 1)) # every image, ranked
    assert set(pd.read_csv(out/'outliers.csv').image_path) == train_paths
    assert set(pd.read_csv(out/'noise_rates.csv', keep_default_na=False)['class']) == set(split.class_name[split.split == 'train'])
    decisions = pd.read_csv(out/'decisions.csv', keep_default_na=False)
    assert set(decisions.image_path) == set(issues.image_path[issues.is_issue]) | set(pd.read_csv(out/'outliers.csv').query('is_outlier').image_path)
    metrics = json.loads((out/'metrics.json').read_text())
    assert metrics['kind'] == 'clean' and metrics['label_issues'] == issues.is_issue.sum()
    assert [r['data'] for r in metrics['comparison']] == ['as given', 'cleaned'] # the retrain ran and was scored on test
    # each row is its run's own scores: the run as given (its metrics.json) and the retrained one (its folder)
    given, retrained = json.loads((reports/'base'/'metrics.json').read_text()), Run.load(out/'retrained').scores()['overall']
    for row, want in zip(metrics['comparison'], (given, retrained), strict=True):
        for key in ('test_accuracy', 'mean_fold_test_accuracy', 'oof_accuracy'): assert row[key] == pytest.approx(want[key])
    page = (out/'report.html').read_text()
    assert unsummarised_sections(page, max_rows=0, max_images=0) == [] # every section opens with its summary
    assert EVIL not in page and 'evil&lt;b&gt;&amp;&quot;class' in page
    # a reviewer's edit: relabel one image of another class to the evil class; the re-run keeps it
    moved = split[(split.split == 'train') & (split.class_name != EVIL) & ~split.image_path.isin(decisions.image_path)].iloc[0]
    edit = dict(cluster='by-hand', image_path=moved.image_path, class_name=moved.class_name, action='relabel', proposed='keep',
                review=True, reason='seen by a person', score=0, method='review', view='none', relabel_to=EVIL)
    pd.concat([decisions, pd.DataFrame([edit])]).to_csv(out/'decisions.csv', index=False)
    run('clean.ipynb', tmp_path/'clean2.ipynb', **common, runs='["base"]', run_name='clean', backend='pixels', k=3)
    kept = pd.read_csv(out/'decisions.csv', keep_default_na=False)
    assert kept.set_index('image_path').loc[moved.image_path, 'action'] == 'relabel'
    run('eda.ipynb', tmp_path/'eda.ipynb', **common, run_name='eda', n_folds=2, samples=3) # adversarial validation (pixels on CPU)
    adversarial = pd.read_csv(reports/'eda'/'adversarial.csv')
    assert set(adversarial.image_path) == set(split.image_path) and adversarial.p_test.between(0, 1).all()
    run('train.ipynb', tmp_path/'train2.ipynb', **common, **smoke, arch='resnet', run_name='cleaned', clean_decisions=str(out/'decisions.csv'),
        test_like_from=str(reports/'eda'/'adversarial.csv'))
    # the most test-like quarter of the training images, scored out of fold: what the run's own files give
    cleaned_run = Run.load(reports/'cleaned')
    found = runs_oof([reports/'cleaned'])
    pd.testing.assert_frame_equal(found.train_rows, cleaned_run.train_rows)
    with pytest.warns(DeprecationWarning, match=r'RunsOOF\.split is deprecated: use \.train_rows'): # its old name
        assert found.split is found.train_rows
    expected = cleaned_run.scores(rows=most_test_like_rows(cleaned_run, reports/'eda'/'adversarial.csv'))['overall']['oof_accuracy']
    assert json.loads((reports/'cleaned'/'metrics.json').read_text())['test_like_oof_accuracy'] == expected
    cleaned = pd.read_csv(reports/'cleaned'/'folds.csv', keep_default_na=False).set_index('image_path')
    assert cleaned.loc[moved.image_path, 'class_name'] == EVIL
    assert cleaned.loc[moved.image_path, 'target'] == split.target[split.class_name == EVIL].iloc[0]
    dropped = set(kept.image_path[kept.action == 'drop'])
    assert not dropped & set(cleaned.index)
    assert f'{len(dropped)} images dropped, 1 relabelled' in (reports/'cleaned'/'report.html').read_text()
    assert tree_state(root) == before # no image moved, changed or deleted


def test_a_run_without_out_of_fold_probabilities_is_a_clear_error(tmp_path):
    manifest, _ = load_data(CLIPART)
    tiny = manifest[manifest.class_name.isin(sorted(manifest.class_name.unique())[:3])].reset_index(drop=True)
    fast = dict(size='cpu', img_size=32, epochs=1, batch_size=8, folds=3, limit_batches=1, log=lambda line: None)
    train_kfold(tiny, tmp_path/'partial', arch='resnet', fold=0, **fast)
    with pytest.raises(DataError, match=r"fold\(s\) \[1, 2\] are not finished"): runs_oof([tmp_path/'partial'])
    (tmp_path/'empty').mkdir()
    with pytest.raises(DataError, match='not a training run'): runs_oof([tmp_path/'empty'])
    with pytest.raises(DataError, match='at least one training run'): runs_oof([])


@pytest.mark.parametrize('probs,targets,message', [
    (np.array([[.5, .4], [.2, .8]]), [0, 1], 'do not sum to 1'),
    (np.array([[.6, .4], [.2, .8]]), [0, 0], 'no training image: 1'),
    (np.array([[.6, .4], [.2, .8]]), [0, 5], 'out of range for 2 classes'),
    (np.array([[.6, .4], [np.nan, np.nan]]), [0, 1], 'a fold of the run is not finished'),
    (np.array([[2.0, -1.0], [.2, .8]]), [0, 1], 'outside [0, 1]'),
])
def test_bad_probabilities_are_clear_errors(probs, targets, message):
    with pytest.raises(DataError, match=message.replace('[', r'\[')): label_issues(probs, np.array(targets))


def test_adversarial_validation_sees_a_shifted_test_set(tmp_path):
    manifest, _ = load_data(CLIPART)
    part = manifest[manifest.target.isin(range(12))].reset_index(drop=True) # 12 classes: their training and test images
    emb = embed(part, 'pixels', views=('none',))
    is_test = (part.split == 'test').to_numpy()
    same = adversarial_validation(emb[~is_test], emb[is_test])
    shifted_files = []
    for f in part.file[is_test]: # the same test images, colours inverted
        dest = tmp_path/'shifted'/f'{len(shifted_files)}.png'; dest.parent.mkdir(exist_ok=True)
        ImageOps.invert(Image.open(f).convert('RGB')).save(dest); shifted_files.append(str(dest))
    shifted = part.copy(); shifted.loc[is_test, 'file'] = shifted_files
    moved = adversarial_validation(emb[~is_test], embed(shifted[is_test], 'pixels', views=('none',)))
    assert same.auc < 0.75 and moved.auc > 0.9, (same.auc, moved.auc)
