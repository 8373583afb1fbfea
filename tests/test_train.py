"K-fold training: every bad input of the training issue, resume, single folds and merge, determinism, the notebook."
import html
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import papermill as pm
import pytest
import torch
from conftest import CLIPART, ROOT, clipart_slice, run_notebook
from torchvision import transforms as T

import dogcls.augment as augment_module
import dogcls.train as train_module
from dogcls.core import DataError
from dogcls.data import load_data
from dogcls.run import Run
from dogcls.train import TrainingError, load_run_model, merge_folds, train_kfold, write_submission

FAST = dict(arch='convnextv2', size='cpu', img_size=32, epochs=1, batch_size=8, folds=3, limit_batches=2)


@pytest.fixture(scope='module')
def tiny():
    manifest, _ = load_data(CLIPART)
    return manifest[manifest.class_name.isin(sorted(manifest.class_name.unique())[:4])].reset_index(drop=True)


def test_unknown_arch(tiny, tmp_path):
    with pytest.raises(DataError, match=r"arch='swim' is neither a dogcls alias \(resnet, resnext, swin"):
        train_kfold(tiny, tmp_path, **{**FAST, 'arch': 'swim'})
    assert not any(tmp_path.iterdir()) # nothing written

def test_img_size_the_model_cannot_take(tiny, tmp_path):
    with pytest.raises(DataError, match='cannot take img_size=16'): train_kfold(tiny, tmp_path, **{**FAST, 'img_size': 16})

def test_batch_larger_than_the_data(tiny, tmp_path):
    with pytest.raises(DataError, match=r'batch_size=500 is larger than the \d+ training images of fold 0'):
        train_kfold(tiny, tmp_path, **{**FAST, 'batch_size': 500})

@pytest.mark.parametrize('kwargs,message', [(dict(epochs=0), 'epochs=0'), (dict(folds=1), 'folds=1'), (dict(lr=-1.0), 'lr=-1.0'),
                                            (dict(fold=3), 'fold=3'), (dict(policy='cutout'), "policy 'cutout'"),
                                            (dict(accumulate_grad_batches=0), 'accumulate_grad_batches=0'),
                                            (dict(ema_decay=1.5), 'ema_decay=1.5'), (dict(drop_path_rate=-0.1), 'drop_path_rate=-0.1'),
                                            (dict(gradient_clip_val=-1.0), 'gradient_clip_val=-1.0'),
                                            (dict(epoch=3), "'epoch' (did you mean epochs?)")])
def test_bad_settings(tiny, tmp_path, kwargs, message):
    with pytest.raises(DataError, match=re.escape(message)): train_kfold(tiny, tmp_path, **{**FAST, **kwargs})

def test_class_missing_from_a_folds_training_part(tiny, tmp_path):
    rare = tiny.class_name.unique()[0]
    keep = tiny[(tiny.class_name != rare) | (tiny.split == 'test')]
    one = tiny[(tiny.class_name == rare) & (tiny.split == 'train')].head(1)
    manifest = pd.concat([keep, one], ignore_index=True) # the rare class has one training image: 2 of 3 folds never see it
    lines = []
    train_kfold(manifest, tmp_path, **FAST, log=lines.append)
    assert any('1 classes are missing from the training part of some folds' in l for l in lines)
    run = merge_folds(tmp_path)
    assert not np.isnan(run.oof_probs).any() and run.oof_probs.shape[1] == 4

def test_nan_loss_stops_with_a_clear_message(tiny, tmp_path, monkeypatch):
    poisoned = lambda config, policy: T.Compose([T.Resize((32, 32)), T.ToTensor(), T.Lambda(lambda x: x * float('nan'))])
    monkeypatch.setattr(augment_module, 'train_transform', poisoned) # what each fold's scheduled transform is made of
    with pytest.raises(TrainingError, match=r'the training loss became nan at epoch 0, step 0 .*lower lr'):
        train_kfold(tiny, tmp_path, **FAST)
    assert not (tmp_path/'fold0'/'done.json').exists()

def test_interrupted_save_never_marks_a_fold_finished(tiny, tmp_path, monkeypatch):
    real_savez = np.savez
    def interrupted(path, **arrays):
        Path(path).write_bytes(b'PK\x03\x04 half written')
        raise KeyboardInterrupt('power cut while saving predictions')
    monkeypatch.setattr(train_module.np, 'savez', interrupted)
    with pytest.raises(KeyboardInterrupt): train_kfold(tiny, tmp_path, **{**FAST, 'fold': 0})
    assert not (tmp_path/'fold0'/'done.json').exists() and not (tmp_path/'fold0'/'predictions.npz').exists()
    with pytest.raises(DataError, match=r'fold\(s\) \[0, 1, 2\] are not finished'): merge_folds(tmp_path)
    monkeypatch.setattr(train_module.np, 'savez', real_savez)
    lines = []
    assert train_kfold(tiny, tmp_path, **{**FAST, 'fold': 0}, log=lines.append) == [0]
    assert any('resuming from' in l for l in lines) and (tmp_path/'fold0'/'done.json').is_file()

def test_unreadable_last_checkpoint_restarts_the_fold(tiny, tmp_path):
    (tmp_path/'fold0').mkdir(parents=True)
    train_kfold(tiny, tmp_path, **{**FAST, 'fold': 1}) # writes config and split
    (tmp_path/'fold0'/'last.ckpt').write_bytes(b'not a checkpoint')
    lines = []
    train_kfold(tiny, tmp_path, **{**FAST, 'fold': 0}, log=lines.append)
    assert any('is unreadable' in l and 'starting the fold again' in l for l in lines)
    assert (tmp_path/'fold0'/'done.json').is_file()

def test_separate_fold_jobs_then_merge_and_resume(tiny, tmp_path):
    for k in range(3): assert train_kfold(tiny, tmp_path, **{**FAST, 'fold': k}) == [k]
    assert train_kfold(tiny, tmp_path, **FAST) == [] # all finished: nothing retrained
    run = merge_folds(tmp_path)
    assert run.folds_done == [0, 1, 2] and not np.isnan(run.oof_probs).any()
    assert (tmp_path/'oof_probs.npz').is_file() and np.load(tmp_path/'test_probs.npz')['per_fold'].shape[0] == 3
    with pytest.raises(DataError, match='epochs: 1 then, 3 now'): train_kfold(tiny, tmp_path, **{**FAST, 'epochs': 3})
    with pytest.raises(DataError, match='different split'): train_kfold(tiny.iloc[5:], tmp_path, **FAST)
    edited = tiny.assign(sha1=np.where(tiny.index == tiny.index[3], '0' * 40, tiny.sha1)) # same names, one image's content changed
    with pytest.raises(DataError, match='other contents of 1 images'): train_kfold(edited, tmp_path, **FAST)

def test_deterministic_on_cpu(tiny, tmp_path):
    for name in ('a', 'b'): train_kfold(tiny, tmp_path/name, **{**FAST, 'fold': 0, 'policy': 'randaugment+hflip'})
    a, b = (np.load(tmp_path/n/'fold0'/'predictions.npz') for n in 'ab')
    assert np.array_equal(a['val_probs'], b['val_probs']) and np.array_equal(a['test_probs'], b['test_probs'])

def test_scores_submission_and_reloading(tiny, tmp_path):
    train_kfold(tiny, tmp_path, **FAST)
    run = merge_folds(tmp_path)
    labels = pd.read_csv(CLIPART/'test_labels.csv').set_index('image_path').target # checked against the file itself
    assert (run.test_targets == pd.Series(run.test_image_path).map(labels).to_numpy()).all()
    scores = run.scores()
    assert len(scores['per_fold']) == 3
    assert scores['overall']['test_accuracy'] == pytest.approx((run.test_mean.argmax(1) == run.test_targets).mean())
    oof, y = run.oof_probs[run.has_oof], run.train_rows.target.to_numpy()[run.has_oof]
    assert scores['overall']['oof_accuracy'] == pytest.approx((oof.argmax(1) == y).mean())
    assert scores['overall']['val_test_gap'] == pytest.approx(scores['overall']['oof_accuracy'] - scores['overall']['test_accuracy'])
    # two test scores, named apart: the fold-averaged prediction's, and the mean of the single fold models' (like out-of-fold)
    per_fold = [f['test_accuracy'] for f in scores['per_fold']]
    assert scores['overall']['mean_fold_test_accuracy'] == pytest.approx(np.mean(per_fold))
    y_test = pd.Series(run.test_image_path).map(labels).to_numpy()
    assert scores['overall']['test_accuracy'] == pytest.approx((run.test_probs.mean(0).argmax(1) == y_test).mean())
    assert scores['overall']['val_single_test_gap'] == pytest.approx(scores['overall']['oof_accuracy'] - np.mean(per_fold))
    test_csv = tmp_path/'test.csv'
    pd.DataFrame(dict(image_path=list(run.test_image_path) + ['test/unreadable.png'])).to_csv(test_csv, index=False)
    summary = write_submission(run, test_csv, tmp_path/'submission.csv')
    submission, rows = pd.read_csv(tmp_path/'submission.csv', dtype={'image_path': str}), pd.read_csv(test_csv, dtype=str)
    assert summary['rows'] == len(rows) and summary['filled_with_most_frequent_class'] == 1
    assert summary['filled_rows'] == [dict(ID=len(rows) - 1, image_path='test/unreadable.png', target=summary['fallback_class'],
                                           reason=summary['filled_rows'][0]['reason'])]
    assert list(submission.columns) == ['ID', 'image_path', 'target']
    predicted = dict(zip(run.test_image_path, run.test_mean.argmax(1), strict=True))
    for i, (row, written) in enumerate(zip(submission.itertuples(), rows.image_path, strict=True)): # row by row against test.csv
        assert (row.ID, row.image_path) == (i, written)
        assert row.target == predicted.get(written, summary['fallback_class'])
    write_submission(run, test_csv, tmp_path/'plain.csv', columns='image_path,target')
    assert list(pd.read_csv(tmp_path/'plain.csv').columns) == ['image_path', 'target']
    with pytest.raises(DataError, match='target always'): write_submission(run, test_csv, tmp_path/'x.csv', columns=['ID'])
    model = load_run_model(tmp_path, fold=0)
    from dogcls.config import DataConfig
    from dogcls.loader import ImageDataModule, cache_side
    from dogcls.models import eval_transform
    dm = ImageDataModule(pd.read_csv(tmp_path/'folds.csv'), fold=0, eval_transform=eval_transform(model), data=DataConfig(batch_size=8),
                         max_side=cache_side(model.dogcls.img_size))
    dm.setup()
    probs = train_module.predict_probs(model, dm.val_dataloader())
    assert np.allclose(probs, np.load(tmp_path/'fold0'/'predictions.npz')['val_probs'], atol=1e-5)

def test_finished_folds_keep_weights_only_unless_asked(tiny, tmp_path):
    train_kfold(tiny, tmp_path/'lean', **{**FAST, 'fold': 0})
    train_kfold(tiny, tmp_path/'full', **{**FAST, 'fold': 0, 'keep_checkpoints': True})
    lean, full = tmp_path/'lean'/'fold0', tmp_path/'full'/'fold0'
    assert not (lean/'best.ckpt').exists() and not (lean/'last.ckpt').exists()
    assert (full/'best.ckpt').is_file() and (full/'last.ckpt').is_file()
    assert (lean/'weights.pt').stat().st_size < (full/'best.ckpt').stat().st_size / 2 # no optimizer state
    weights = torch.load(full/'weights.pt', weights_only=True)['state_dict']
    assert all(torch.equal(v, torch.load(full/'best.ckpt', weights_only=True)['state_dict'][k]) for k, v in weights.items())
    done = json.loads((full/'done.json').read_text()) # a run written before weights.pt existed names best.ckpt
    (full/'done.json').write_text(json.dumps({**done, 'best_checkpoint': 'best.ckpt'}))
    (full/'weights.pt').unlink()
    model = load_run_model(tmp_path/'full', fold=0)
    assert all(torch.equal(v, model.state_dict()[k.removeprefix('model.')]) for k, v in weights.items())

def test_train_notebook_writes_the_report(tmp_path):
    evil = 'evil<b>&"class'
    root = clipart_slice(tmp_path/'d', 4, evil)
    rows = pd.read_csv(root/'train.csv')
    last = rows.class_name.unique()[-1]
    copied = rows[rows.class_name == rows.class_name.unique()[-2]].head(6) # the same files filed again under another class
    extra = copied.assign(class_name=last, target=rows[rows.class_name == last].target.iloc[0],
                          image_path=[f'train/{last}/again_{Path(p).name}' for p in copied.image_path])
    twice = rows[rows.class_name == last].head(3) # and three filed twice in their own class
    extra = pd.concat([extra, twice.assign(image_path=[f'train/{last}/twice_{Path(p).name}' for p in twice.image_path])])
    copied = pd.concat([copied, twice])
    for src, dst in zip(copied.image_path, extra.image_path, strict=True): (root/dst).write_bytes((root/src).read_bytes())
    pd.concat([rows, extra]).to_csv(root/'train.csv', index=False)
    reports = tmp_path/'reports'
    run_notebook('train.ipynb', tmp_path/'out.ipynb', data=str(root), reports=str(reports), arch='convnextv2', size='cpu', img_size=32, epochs=2,
                                        folds=3, batch_size=8, limit_batches=2, gallery=4)
    out = reports/'convnextv2'
    page = (out/'report.html').read_text()
    assert evil not in page and html.escape(evil) in page
    for section in ('Learning curves and overfitting', 'Leakage', 'Confusion matrix (out-of-fold)', 'Per-class accuracy',
                    'Highest-loss training images', 'Scores per fold'):
        assert section in page
    images = re.findall(r'<img [^>]*src="([^"]*)"', page)
    assert len(images) >= 2 + 4 and all(s.startswith(('data:image/png;base64,', 'data:image/jpeg;base64,')) for s in images)
    metrics = json.loads((out/'metrics.json').read_text())
    assert metrics['kind'] == 'train' and metrics['folds_done'] == [0, 1, 2]
    # the test accuracy recomputed from the files the user gave: predicted class names against test_labels.csv's
    run, names = Run.load(out), pd.read_csv(root/'train.csv').drop_duplicates('target').set_index('target').class_name
    truth = pd.read_csv(root/'test_labels.csv').set_index('image_path').target.map(names)
    hits = np.array(run.names)[run.test_mean.argmax(1)] == pd.Series(run.test_image_path).map(truth).to_numpy()
    assert metrics['test_accuracy'] == pytest.approx(hits.mean()) and metrics['test_n'] == len(hits) == len(truth)
    # the index tells the truth: the parameters given (not the defaults), the smoke run marked, the tracker's folder linked
    assert metrics['parameters'] == dict(data=str(root), reports=str(reports), arch='convnextv2', size='cpu', img_size=32, epochs=2,
                                         folds=3, batch_size=8, limit_batches=2, gallery=4)
    index = (reports/'index.html').read_text()
    assert '<tr class="smoke"' in index and 'train · smoke run' in index and 'limit_batches=2' in index
    assert '<a href="convnextv2/logs/">csv</a>' in index and (out/'logs'/'fold2'/'metrics.csv').is_file()
    # identical files (filed twice in one class, and under two classes) always share a fold: no leak, without a dedup run
    split = pd.read_csv(out/'folds.csv').query('split == "train"')
    assert split.sha1.duplicated().sum() >= 8 and split.groupby('sha1').fold.nunique().max() == 1
    assert metrics['leak_audit'] == 0 and metrics['dedup_source'] == 'none found'
    # what went wrong comes first, in the report and in the notebook's output: no dedup run, and random weights
    first = page[:page.index('<h2>')]
    assert 'Near-duplicates (mirrored, resized, recoloured copies) were not grouped' in first
    assert 'convnextv2 was trained from random initialisation' in first
    assert [w['message'][:30] for w in metrics['warnings']][:2] == ['Near-duplicates (mirrored, res', 'convnextv2 was trained from ra']
    submission, test = pd.read_csv(out/'submission.csv'), pd.read_csv(root/'test.csv')
    assert submission.image_path.tolist() == test.image_path.tolist()
    assert (out/'oof_probs.npz').is_file() and (out/'test_probs.npz').is_file()
    outputs = [o for c in json.loads((tmp_path/'out.ipynb').read_text())['cells'] for o in c.get('outputs', []) if o.get('name') == 'stdout']
    log = ''.join(''.join(o['text']) for o in outputs)
    assert log.count('epoch 2/2') == 3 and 'GPU available' not in log # one line per epoch, no banners
    assert 'WARNING: Near-duplicates (mirrored' in log and 'WARNING: convnextv2 was trained from random' in log
    # with a dedup run of the same data in the reports folder, the next run applies its decisions and names the run
    run_notebook('dedup.ipynb', tmp_path/'dedup.ipynb', data=str(root), reports=str(reports), run_name='dedup-slice', geometric=False)
    run_notebook('train.ipynb', tmp_path/'out2.ipynb', data=str(root), reports=str(reports), run_name='after-dedup', arch='convnextv2', size='cpu',
                                        img_size=32, epochs=1, folds=3, batch_size=8, limit_batches=1, gallery=1)
    metrics = json.loads((reports/'after-dedup'/'metrics.json').read_text())
    assert metrics['dedup_source'] == 'found' and metrics['dedup_decisions'] == str(reports/'dedup-slice'/'decisions.csv')
    assert metrics['leak_audit'] == 0 and not any('were not grouped' in w['message'] for w in metrics['warnings'])
    assert 'dedup decisions of dedup run dedup-slice, found in the reports folder' in (reports/'after-dedup'/'report.html').read_text()

def test_ema_and_gradient_accumulation(tiny, tmp_path):
    "With ema_decay the fold keeps (and predicts with) the moving average; accumulate_grad_batches=2 halves the optimiser steps."
    train_kfold(tiny, tmp_path, **{**FAST, 'fold': 0, 'limit_batches': 4, 'ema_decay': 0.9, 'accumulate_grad_batches': 2,
                                   'keep_checkpoints': True})
    checkpoint = torch.load(tmp_path/'fold0'/'last.ckpt', weights_only=True)
    assert checkpoint['global_step'] == 2 # 4 batches, 2 per step
    best = torch.load(tmp_path/'fold0'/'best.ckpt', weights_only=True)['state_dict']
    kept = torch.load(tmp_path/'fold0'/'weights.pt', weights_only=True)['state_dict']
    assert all(torch.equal(v, best['ema.module.' + k.removeprefix('model.')]) for k, v in kept.items())
    assert any(not torch.equal(v, best[k]) for k, v in kept.items() if v.is_floating_point()) # not the raw weights
    config = json.loads((tmp_path/'config.json').read_text())
    assert config['model']['ema_decay'] == 0.9 and config['trainer']['accumulate_grad_batches'] == 2

def test_trainer_options_reach_lightning(tmp_path):
    "A TrainerConfig field named like an L.Trainer argument is passed on as it is."
    from dogcls.config import TrainerConfig
    trainer = train_module._trainer(TrainerConfig(epochs=3, accumulate_grad_batches=4, gradient_clip_val=0.5), tmp_path, [], False, gpu=False)
    assert (trainer.max_epochs, trainer.accumulate_grad_batches, trainer.gradient_clip_val) == (3, 4, 0.5)


# ---------------------------------------------------------------- one source of defaults
NOTEBOOK_ONLY = {'data', 'run_name', 'reports', 'offline_manifest', 'dedup_decisions', 'clean_decisions', 'test_like_from', 'test_like',
                 'fold', 'merge_only', 'gallery', 'submission_columns', 'gradcam', 'gradcam_layer'} # the notebook's, not training's

def test_train_notebook_defaults_are_the_config_defaults():
    "The parameters cell of nbs/train.ipynb lists every TrainConfig option with the dataclass's default, as TrainConfig reads it."
    import ast

    from dogcls.config import TrainConfig
    params = pm.inspect_notebook(str(ROOT/'nbs'/'train.ipynb'))
    defaults = TrainConfig().flat()
    assert sorted(set(defaults) - set(params)) == [], 'training options missing from the parameters cell'
    assert sorted(set(params) - set(defaults) - NOTEBOOK_ONLY) == [], 'parameters that are neither options nor notebook settings'
    drift = {}
    for name, default in defaults.items():
        as_read = TrainConfig.from_flat(**{name: ast.literal_eval(params[name]['default'])}).flat()[name] # img_size 0 -> None
        if as_read != default: drift[name] = (params[name]['default'], default)
        assert params[name]['help'], f'{name}: no comment in the parameters cell'
    assert drift == {}, f'notebook default vs TrainConfig: {drift}'


def test_policy_schedule_switches_at_its_epochs(tiny, tmp_path):
    "Staged augmentation: the history records the policy each epoch applied; the learning rate drops at each switch."
    options = {**FAST, 'fold': 0, 'epochs': 3, 'limit_batches': 2}
    train_kfold(tiny, tmp_path/'staged', policy_schedule='none@1,hflip+rotate@2,elastic+grid@3', schedule_lr_drop=0.5,
                log=lambda s: None, **options)
    train_kfold(tiny, tmp_path/'plain', policy_schedule='none@1,hflip+rotate@2,elastic+grid@3', log=lambda s: None, **options)
    staged, plain = (pd.read_csv(tmp_path/r/'fold0'/'history.csv') for r in ('staged', 'plain'))
    assert staged.policy.tolist() == ['none', 'hflip+rotate', 'elastic+grid'] # as the loader applied them
    # an epoch's lr is the rate of the step after it: epoch 2's first step has one switch behind it, epoch 3's two
    assert abs(staged.lr[0] / plain.lr[0] - 0.5) < 1e-9 and abs(staged.lr[1] / plain.lr[1] - 0.25) < 1e-9
    unscheduled = tmp_path/'default'
    train_kfold(tiny, unscheduled, log=lambda s: None, **options)
    assert pd.read_csv(unscheduled/'fold0'/'history.csv').policy.tolist() == ['randaugment+hflip'] * 3
