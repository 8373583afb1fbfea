"""A fold killed (a real SIGKILL of the process that trains) and started again gives what the uninterrupted fold gives:
the same history, weights and out-of-fold and test probabilities, bit for bit on this CPU."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import CLIPART

from dogcls.run import Run

# the child trains fold 0 of a 4-class slice and, where told, kills itself with SIGKILL: once epoch N's last.ckpt is
# written (its history row is written just before), or once the fold's predictions are written but not its done.json
CHILD = r'''
import json, os, signal, sys
import lightning as L, torch
import dogcls.train as train
from dogcls.data import load_data
out, kill, options = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
torch.set_num_threads(1)
if kill.startswith('epoch'):
    save = L.Trainer.save_checkpoint
    def save_then_kill(self, path, *args, **kwargs):
        save(self, path, *args, **kwargs)
        if os.path.basename(path) == 'last.ckpt' and self.current_epoch + 1 == int(kill[5:]):
            os.kill(os.getpid(), signal.SIGKILL)
    L.Trainer.save_checkpoint = save_then_kill
elif kill == 'predict':
    save = train._save_predictions
    def save_then_kill(*args, **kwargs): save(*args, **kwargs); os.kill(os.getpid(), signal.SIGKILL)
    train._save_predictions = save_then_kill
manifest, _ = load_data(sys.argv[4])
manifest = manifest[manifest.class_name.isin(sorted(manifest.class_name.unique())[:4])]
train.train_kfold(manifest, out, fold=0, **options)
'''
FAST = dict(arch='convnextv2', size='cpu', img_size=32, epochs=2, batch_size=8, folds=3, limit_batches=3)
NUMBERS = ['epoch', 'train_loss', 'train_acc', 'val_loss', 'val_acc', 'lr'] # history.csv less its seconds


def train(out: Path, kill: str = 'none', **options) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, '-c', CHILD, str(out), kill, json.dumps({**FAST, **options}), str(CLIPART)],
                          capture_output=True, text=True, timeout=600)


def same_fold(a: Path, b: Path):
    "History (less the times), weights and predictions of fold 0 of two runs: equal bit for bit."
    ha, hb = (pd.read_csv(x/'fold0'/'history.csv') for x in (a, b))
    pd.testing.assert_frame_equal(ha[NUMBERS], hb[NUMBERS], check_exact=True)
    wa, wb = (torch.load(x/'fold0'/'weights.pt', weights_only=True)['state_dict'] for x in (a, b))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    pa, pb = (np.load(x/'fold0'/'predictions.npz') for x in (a, b))
    for key in ('val_probs', 'test_probs', 'val_image_path'): assert np.array_equal(pa[key], pb[key]), key


@pytest.fixture(scope='module')
def uninterrupted(tmp_path_factory) -> Path:
    "Fold 0 with the default options, never interrupted: the reference of the first case and of the prediction case."
    out = tmp_path_factory.mktemp('uninterrupted')/'run'
    assert train(out).returncode == 0
    return out


@pytest.mark.parametrize('name,options', [('default', {}),
                                          ('ema, mixup and cutmix', dict(ema_decay=0.9, mixup=0.2, cutmix=1.0)),
                                          ('gradient accumulation', dict(accumulate_grad_batches=2))])
def test_killed_after_an_epoch_resumes_exactly(tmp_path, uninterrupted, name, options):
    reference = uninterrupted if not options else tmp_path/'uninterrupted'
    if options: assert train(reference, **options).returncode == 0
    killed = train(tmp_path/'resumed', 'epoch1', **options)
    assert killed.returncode == -9 # SIGKILL, after epoch 1's history row and checkpoint
    assert len(pd.read_csv(tmp_path/'resumed'/'fold0'/'history.csv')) == 1
    assert not (tmp_path/'resumed'/'fold0'/'done.json').is_file()
    again = train(tmp_path/'resumed', **options)
    assert again.returncode == 0, again.stderr[-2000:]
    assert 'fold 1/3: resuming from' in again.stdout and 'after epoch 1;' in again.stdout
    same_fold(reference, tmp_path/'resumed')
    # the report's per-fold table says the fold was resumed, and after which epoch
    run = Run.load(tmp_path/'resumed', partial=True)
    assert run.done[0]['resumed_after_epochs'] == [1] and run.scores()['per_fold'][0]['resumed_after_epoch'] == '1'
    assert 'resumed_after_epoch' not in Run.load(reference, partial=True).scores()['per_fold'][0]


def test_killed_while_predicting_resumes_exactly(tmp_path, uninterrupted):
    "Killed after fit, before done.json: the restart trains nothing more and writes the same predictions and weights."
    assert train(tmp_path/'resumed', 'predict').returncode == -9
    assert (tmp_path/'resumed'/'fold0'/'predictions.npz').is_file() and not (tmp_path/'resumed'/'fold0'/'done.json').is_file()
    again = train(tmp_path/'resumed')
    assert again.returncode == 0 and 'after epoch 2;' in again.stdout and 'epoch 1/2' not in again.stdout # no retraining
    same_fold(uninterrupted, tmp_path/'resumed')
