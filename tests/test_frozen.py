"""Frozen and partly frozen backbones: features stored once and read by later runs, a head per fold, the files of a
fine-tuned run (so ensembles and load_run_model work unchanged), and every bad option refused before any work."""
import json
import re

import numpy as np
import pytest
import torch
from conftest import CLIPART, clipart_slice, run_notebook

from dogcls.config import TrainConfig
from dogcls.core import DataError
from dogcls.data import load_data
from dogcls.ensemble import ensemble, load_runs
from dogcls.heads import build_model
from dogcls.loader import ImageDataModule
from dogcls.models import eval_transform
from dogcls.train import load_run_model, merge_folds, predict_probs, train_kfold

FROZEN = dict(arch='efficientnet_lite0', size='cpu', freeze='backbone', head='mlp', head_hidden=64, epochs=3,
              batch_size=16, folds=3)


@pytest.fixture(scope='module', autouse=True)
def own_cache(tmp_path_factory):
    "A feature store of this module's own: what it computes and reads is what these tests did."
    with pytest.MonkeyPatch.context() as m:
        m.setenv('XDG_CACHE_HOME', str(tmp_path_factory.mktemp('cache')))
        yield


@pytest.fixture(scope='module')
def tiny():
    manifest, _ = load_data(CLIPART)
    return manifest[manifest.class_name.isin(sorted(manifest.class_name.unique())[:4])].reset_index(drop=True)


@pytest.fixture(scope='module')
def frozen_run(tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp('frozen')/'run'
    lines = []
    assert train_kfold(tiny, out, log=lines.append, **FROZEN) == [0, 1, 2]
    return out, lines


def test_frozen_run_writes_what_a_fine_tuned_run_writes(frozen_run, tiny):
    out, lines = frozen_run
    run = merge_folds(out)
    train_rows = (tiny.split == 'train').sum()
    assert run.oof_probs.shape == (train_rows, 4) and not np.isnan(run.oof_probs).any()
    assert run.test_probs.shape == (3, (tiny.split == 'test').sum(), 4)
    assert run.scores()['overall']['oof_accuracy'] > 0.5 # 4 classes, pretrained features: far above chance
    assert sorted(p.name for p in (out/'fold0').iterdir()) == ['done.json', 'history.csv', 'predictions.npz', 'weights.pt']
    done = json.loads((out/'fold0'/'done.json').read_text())
    assert done['head_only'] and done['epochs_trained'] == 3 and done['params_trainable'] < done['params_total'] / 10
    features = json.loads((out/'features.json').read_text())
    # each distinct content once: the training images' two views, the test images' plain view where not stored already
    train_hashes, test_hashes = set(tiny.sha1[tiny.split == 'train']), set(tiny.sha1[tiny.split == 'test'])
    assert features['views'] == ['none', 'h'] and features['computed'] == 2 * len(train_hashes) + len(test_hashes - train_hashes)
    assert sum('fold 1/3 epoch' in l for l in lines) == 3


def test_later_runs_read_the_stored_features(frozen_run, tiny, tmp_path):
    "Another run of the same backbone, weights and size computes nothing: every feature is read from the store."
    train_kfold(tiny, tmp_path/'again', log=lambda s: None, **{**FROZEN, 'head': 'linear', 'seed': 7})
    again = json.loads((tmp_path/'again'/'features.json').read_text())
    assert again['computed'] == 0 and again['seconds'] == 0


def test_a_frozen_fold_loads_as_a_whole_model(frozen_run, tiny):
    "load_run_model puts the head on the pretrained backbone: its predictions are the fold's stored ones."
    out, _ = frozen_run
    model = load_run_model(out, fold=1)
    dm = ImageDataModule(merge_folds(out).folds, fold=1, eval_transform=eval_transform(model), cache=None)
    dm.setup()
    probs = predict_probs(model, dm.val_dataloader())
    stored = np.load(out/'fold1'/'predictions.npz')['val_probs']
    assert probs.shape == stored.shape and (probs.argmax(1) == stored.argmax(1)).mean() > 0.9
    assert np.abs(probs - stored).max() < 0.1 # the stored features are bfloat16 on this CPU, the model float32


def test_frozen_and_fine_tuned_runs_ensemble(frozen_run, tiny, tmp_path):
    out, _ = frozen_run
    train_kfold(tiny, tmp_path/'tuned', arch='convnextv2', size='cpu', img_size=32, epochs=1, batch_size=8, folds=3,
                limit_batches=2, log=lambda s: None)
    table, predictions = ensemble(load_runs([out, tmp_path/'tuned']))
    assert {'soft voting', 'stacking'} <= set(table.model) and len(predictions) == len(table)


def test_partly_frozen_keeps_frozen_batch_norms(tiny, tmp_path):
    "freeze=2: the last two blocks and the head learn; the frozen batch norms keep the pretrained statistics."
    train_kfold(tiny, tmp_path, arch='efficientnet_lite0', size='cpu', freeze=2, layer_decay=0.8, epochs=1,
                batch_size=16, folds=3, fold=0, limit_batches=3, keep_checkpoints=True, log=lambda s: None)
    done = json.loads((tmp_path/'fold0'/'done.json').read_text())
    assert 0 < done['params_trainable'] < done['params_total']
    trained = load_run_model(tmp_path, 0).state_dict()
    pretrained = build_model(TrainConfig.load(tmp_path).model, 4).state_dict() # the same model, before training
    assert torch.equal(trained['bn1.running_mean'], pretrained['bn1.running_mean']) # frozen: the pretrained statistics
    assert torch.equal(trained['conv_stem.weight'], pretrained['conv_stem.weight'])
    assert not torch.equal(trained['bn2.running_mean'], pretrained['bn2.running_mean']) # learning: updated
    assert not torch.equal(trained['conv_head.weight'], pretrained['conv_head.weight'])


@pytest.mark.parametrize('options,message', [(dict(freeze=99), 'freeze=99: tf_efficientnet_lite0 has 17 blocks'),
                                             (dict(freeze='half'), "freeze='half': choose none, backbone"),
                                             (dict(head='deep'), "head='deep': choose one of linear, mlp"),
                                             (dict(layer_decay=1.5), 'layer_decay=1.5: use a number in (0, 1]')])
def test_bad_options_are_refused_before_any_work(tiny, tmp_path, options, message):
    with pytest.raises(DataError, match=re.escape(message)):
        train_kfold(tiny, tmp_path/'run', arch='efficientnet_lite0', size='cpu', log=lambda s: None, **options)
    assert not (tmp_path/'run').exists() or not any((tmp_path/'run').iterdir())


def test_train_notebook_with_a_frozen_backbone(tmp_path):
    "The headline notebook with -p freeze backbone: the report says what trained and how long extraction and heads took."
    root = clipart_slice(tmp_path/'d', 3)
    reports = tmp_path/'reports'
    run_notebook('train.ipynb', tmp_path/'out.ipynb', data=str(root), reports=str(reports), arch='efficientnet_lite0', size='cpu', folds=3,
                                        freeze='backbone', head='mlp', epochs=2, batch_size=8, gallery=2)
    page = (reports/'efficientnet_lite0'/'report.html').read_text()
    assert 'seconds: feature extraction (computed now) / head training (all folds)' in page
    assert 'parameters that learn, of all' in page and (reports/'efficientnet_lite0'/'submission.csv').is_file()
