"""Multi-process training on the CPU (gloo): Lightning's `ddp` from a script and `ddp_notebook` in the train notebook.
Every out-of-fold and test image gets exactly one prediction (DistributedSampler pads, so only one process predicts)."""
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, clipart_slice, run_notebook

from dogcls.train import merge_folds

SCRIPT = '''
import sys
from dogcls.data import load_data
from dogcls.train import train_kfold
m, _ = load_data(sys.argv[3])
settings = dict(arch='convnextv2', size='cpu', img_size=32, epochs=1, batch_size=8, folds=2, limit_batches=3)
if sys.argv[1] == 'single': train_kfold(m, sys.argv[2], **settings)
else: train_kfold(m, sys.argv[2], **settings, accelerator='cpu', devices=2, strategy=sys.argv[1])
'''


def predicted_once(run_dir, run):
    "Each fold's predictions cover its validation images and the test images, each exactly once."
    for k in run.folds_done:
        p = np.load(run_dir/f'fold{k}'/'predictions.npz')
        val = run.train_rows[run.train_rows.fold == k].image_path
        assert len(p['val_image_path']) == len(val) and sorted(p['val_image_path']) == sorted(val)
        assert list(p['test_image_path']) == list(run.test_image_path) and len(set(p['test_image_path'])) == len(p['test_image_path'])
    assert not np.isnan(run.oof_probs).any()


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    return clipart_slice(tmp_path_factory.mktemp('ddp')/'data', 5)


def test_ddp_from_a_script_matches_a_single_process_run(tmp_path, data):
    script = tmp_path/'train.py' # ddp starts the other process by running this same script again
    script.write_text(SCRIPT)
    for strategy in ('single', 'ddp'):
        out = subprocess.run([sys.executable, str(script), strategy, str(tmp_path/strategy), str(data)], cwd=ROOT,
                             capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr[-3000:]
    single, ddp = merge_folds(tmp_path/'single'), merge_folds(tmp_path/'ddp')
    predicted_once(tmp_path/'ddp', ddp)
    assert ddp.oof_probs.shape == single.oof_probs.shape and ddp.test_probs.shape == single.test_probs.shape
    assert (ddp.train_rows.target.values == single.train_rows.target.values).all()
    assert (ddp.train_rows.image_path.values == single.train_rows.image_path.values).all()
    assert list(ddp.test_image_path) == list(single.test_image_path)
    history = pd.read_csv(tmp_path/'ddp'/'fold0'/'history.csv')
    assert len(history) == 1 # one writer, not one per process


def test_ddp_notebook_in_the_train_notebook(tmp_path, data):
    reports = tmp_path/'reports'
    run_notebook('train.ipynb', tmp_path/'out.ipynb', data=str(data), reports=str(reports), arch='convnextv2', size='cpu', img_size=32, epochs=1,
                                        folds=2, batch_size=8, limit_batches=3, gallery=2, devices=2, strategy='ddp_notebook')
    run = merge_folds(reports/'convnextv2')
    predicted_once(reports/'convnextv2', run)
    metrics = json.loads((reports/'convnextv2'/'metrics.json').read_text())
    assert metrics['folds_done'] == [0, 1] and metrics['config']['folds'] == 2
    done = json.loads((reports/'convnextv2'/'fold0'/'done.json').read_text())
    history = pd.read_csv(reports/'convnextv2'/'fold0'/'history.csv') # the history the forked process wrote
    assert done['epochs_trained'] == 1 == len(history) and done['best_val_loss'] == pytest.approx(history.val_loss.min())
