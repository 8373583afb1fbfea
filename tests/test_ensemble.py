"Ensembles: the shared-split checks on every bad input of the ensemble issue, honest stacking, TTA, the notebook."
import dataclasses
import json
import re
import shutil

import numpy as np
import pandas as pd
import pytest
from conftest import CLIPART, run_notebook

from dogcls.core import DataError
from dogcls.data import load_data
from dogcls.ensemble import cross_fit, diversity, ensemble, hard_vote, load_runs, tta_predictions
from dogcls.train import train_kfold

FAST = dict(size='cpu', img_size=32, epochs=1, batch_size=8, folds=3, limit_batches=2, log=lambda line: None)


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    "Three tiny runs on one split, one on another split, one on other classes, one with a missing fold."
    root = tmp_path_factory.mktemp('runs')
    manifest, _ = load_data(CLIPART)
    classes = sorted(manifest.class_name.unique())
    tiny = manifest[manifest.class_name.isin(classes[:4])].reset_index(drop=True)
    for name, arch in [('cnx', 'convnextv2'), ('res', 'resnet'), ('lite', 'efficientnet_lite0')]:
        train_kfold(tiny, root/name, arch=arch, **FAST)
    train_kfold(tiny, root/'other-split', arch='resnet', seed=7, **FAST)
    other = manifest[manifest.class_name.isin(classes[:3] + classes[5:6])].reset_index(drop=True)
    train_kfold(other, root/'other-classes', arch='resnet', **FAST)
    train_kfold(tiny, root/'two-folds', arch='resnet', fold=0, **FAST)
    train_kfold(tiny, root/'two-folds', arch='resnet', fold=1, **FAST)
    return root


def test_runs_from_different_splits(runs):
    with pytest.raises(DataError, match=r"runs 'cnx' and 'other-split' use different splits: '.*' is in fold \d of 'cnx' and fold \d"):
        load_runs([runs/'cnx', runs/'other-split'])

def test_run_with_missing_folds(runs):
    with pytest.raises(DataError, match=r"run '.*two-folds': .*fold\(s\) \[2\] are not finished"):
        load_runs([runs/'cnx', runs/'two-folds'])

def test_single_run(runs):
    with pytest.raises(DataError, match='at least two runs'): load_runs([runs/'cnx'])
    with pytest.raises(DataError, match='same run twice'): load_runs([runs/'cnx', runs/'cnx'])

def test_runs_with_different_class_sets(runs):
    with pytest.raises(DataError, match="'cnx' and 'other-classes' have different class sets"):
        load_runs([runs/'cnx', runs/'other-classes'])

def test_not_a_run(runs, tmp_path):
    with pytest.raises(DataError, match='not a finished training run'): load_runs([runs/'cnx', tmp_path])


def test_every_combiner_is_scored(runs):
    loaded = load_runs([runs/'cnx', runs/'res', runs/'lite'])
    labels = pd.read_csv(CLIPART/'test_labels.csv').set_index('image_path').target
    assert (loaded['cnx'].test_targets == pd.Series(loaded['cnx'].test_image_path).map(labels).to_numpy()).all()
    result = ensemble(loaded)
    table, predictions = result
    assert table.model.tolist() == ['cnx', 'res', 'lite', 'soft voting', 'hard voting', 'weighted soft voting', 'stacking',
                                    'fold-majority vote', 'greedy selection']
    assert table[['oof_accuracy', 'test_accuracy', 'mean_fold_test_accuracy', 'gap', 'single_gap']].notna().all().all()
    single = table.set_index('model').loc['cnx']
    run = loaded['cnx'] # a single model's like-for-like test score is the mean of its fold models' test accuracies
    per_fold = [(p.argmax(1) == pd.Series(run.test_image_path).map(labels).to_numpy()).mean() for p in run.test_probs]
    assert single.mean_fold_test_accuracy == pytest.approx(np.mean(per_fold))
    n_train, n_test = len(loaded['cnx'].train_rows), len(loaded['cnx'].test_image_path)
    for oof, test in predictions.values(): assert oof.shape == (n_train, 4) and test.shape == (n_test, 4)
    assert sum(result.weights.values()) == pytest.approx(1.0, abs=1e-3) and list(result.weights) == ['cnx', 'res', 'lite']

def test_stacking_never_sees_test_labels(runs):
    loaded = load_runs([runs/'cnx', runs/'res', runs/'lite'])
    def permuted(run): # the same runs with their test labels shuffled
        folds, test = run.folds.copy(), (run.folds.split == 'test').to_numpy()
        folds.loc[test, 'target'] = np.random.default_rng(0).permutation(folds.target[test].to_numpy())
        return dataclasses.replace(run, folds=folds)
    a, pa = ensemble(loaded)
    b, pb = ensemble({name: permuted(run) for name, run in loaded.items()})
    scored_on_test = ['test_accuracy', 'mean_fold_test_accuracy', 'test_macro_f1', 'gap', 'single_gap']
    assert a.drop(columns=scored_on_test).equals(b.drop(columns=scored_on_test))
    for name in pa: assert np.array_equal(pa[name][0], pb[name][0]) and np.array_equal(pa[name][1], pb[name][1])
    assert not np.allclose(a.test_accuracy, b.test_accuracy) # only the test score moved

def test_cross_fitting_never_scores_a_row_it_was_fitted_on():
    rng = np.random.default_rng(1)
    y, folds = rng.integers(0, 3, 90), np.arange(90) % 3
    model_a = np.eye(3)[y] * 0.9 + 0.1 / 3 # a perfect model
    model_b = np.full((90, 3), 1 / 3)
    leaked = model_a.copy(); leaked[folds == 0] = np.eye(3)[(y[folds == 0] + 1) % 3] * 0.9 + 0.1 / 3 # wrong on fold 0 only
    crossed, _, _ = cross_fit([leaked, model_b], [leaked[:5], model_b[:5]], y, folds, 'weighted')
    # weights fitted without fold 0 trust the first model, so fold 0 (scored by them) is wrong: no peeking at its labels
    assert (crossed[folds == 0].argmax(1) != y[folds == 0]).all()
    with pytest.raises(DataError, match="combiner='median'"): cross_fit([leaked], [leaked], y, folds, 'median')

def test_hard_vote_ties_and_diversity(runs):
    p1, p2 = np.array([[0.9, 0.1]]), np.array([[0.4, 0.6]])
    assert hard_vote([p1, p2]).argmax(1).tolist() == [0] # 1 vote each: the higher mean probability wins
    loaded = load_runs([runs/'cnx', runs/'res'])
    disagreement, correlation = diversity(loaded)
    a, b = (loaded[n].oof_probs.argmax(1) for n in ('cnx', 'res')) # counted by hand from each run's own files
    assert disagreement.loc['cnx', 'cnx'] == 0 and disagreement.loc['cnx', 'res'] == pytest.approx((a != b).mean())
    y = loaded['cnx'].train_rows.target.to_numpy()
    with np.errstate(invalid='ignore', divide='ignore'): expected = np.corrcoef(a != y, b != y)[0, 1]
    assert correlation.loc['cnx', 'res'] == pytest.approx(expected, nan_ok=True)

def test_flip_tta_at_prediction_time(runs, tmp_path):
    shutil.copytree(runs/'cnx', tmp_path/'cnx')
    plain, flipped = load_runs([runs/'cnx', runs/'res'])['cnx'], tta_predictions(tmp_path/'cnx')
    assert flipped.oof_probs.shape == plain.oof_probs.shape and not np.allclose(flipped.oof_probs, plain.oof_probs)
    assert (tmp_path/'cnx'/'tta_probs.npz').is_file()


def test_ensemble_notebook(runs, tmp_path):
    reports = tmp_path/'reports'
    for name in ('cnx', 'res', 'lite'): shutil.copytree(runs/name, reports/name)
    run_notebook('ensemble.ipynb', tmp_path/'out.ipynb', runs='["cnx", "res", "lite"]', reports=str(reports), run_name='ens', tta=True)
    out = reports/'ens'
    metrics = json.loads((out/'metrics.json').read_text())
    assert metrics['kind'] == 'ensemble' and metrics['runs'] == ['cnx', 'res', 'lite'] and metrics['tta'] is True
    assert metrics['best'] in ('soft voting', 'hard voting', 'weighted soft voting', 'stacking')
    page = (out/'report.html').read_text()
    for section in ('Single models and ensembles', 'confusion matrix', 'Per-class gains', 'Diversity between models'): assert section in page
    assert all(s.startswith('data:image/png;base64,') for s in re.findall(r'<img [^>]*src="([^"]*)"', page))
    submission = pd.read_csv(out/'submission.csv')
    assert submission.image_path.tolist() == pd.read_csv(CLIPART/'test.csv').image_path.tolist()
    index = (reports/'index.html').read_text()
    assert 'ens/report.html' in index and 'runs: cnx, res, lite' in index
