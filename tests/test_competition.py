"The reference competition's own layout, as downloaded, through every experiment notebook with no edit to its CSVs."
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from conftest import ROOT, as_shipped, clipart_slice, tree_state
from conftest import run_notebook as run

from dogcls.report import unsummarised_sections


def test_the_competition_layout_goes_through_eda_dedup_train_and_ensemble(tmp_path):
    root = as_shipped(clipart_slice(tmp_path/'data', 4))
    assert not pd.read_csv(root/'train.csv').image_path.str.startswith('train/').any()
    before = tree_state(root)
    reports = tmp_path/'reports'
    common = dict(data=str(root), reports=str(reports))
    run('eda.ipynb', tmp_path/'eda.ipynb', **common, run_name='eda', n_folds=3)
    eda = json.loads((reports/'eda'/'metrics.json').read_text())
    assert eda['files_skipped'] == 0 and 'train.csv relative to train/' in eda['image_paths']
    run('dedup.ipynb', tmp_path/'dedup.ipynb', **common, run_name='dedup')
    decisions = reports/'dedup'/'decisions.csv'
    smoke = dict(size='cpu', img_size=32, epochs=1, folds=2, batch_size=8, limit_batches=2, gallery=2, dedup_decisions=str(decisions))
    for arch in ('convnextv2', 'resnet'): run('train.ipynb', tmp_path/f'{arch}.ipynb', **common, **smoke, arch=arch, run_name=arch)
    run('ensemble.ipynb', tmp_path/'ensemble.ipynb', **common, runs='["convnextv2", "resnet"]', run_name='ensemble')
    assert tree_state(root) == before # nothing in the data folder was changed or added
    test = pd.read_csv(root/'test.csv', dtype=str)
    for name in ('convnextv2', 'ensemble'):
        submission = pd.read_csv(reports/name/'submission.csv', dtype={'image_path': str})
        assert list(submission.columns) == ['ID', 'image_path', 'target']
        assert submission.ID.tolist() == list(range(len(test))) and submission.image_path.tolist() == test.image_path.tolist()
        metrics = json.loads((reports/name/'metrics.json').read_text())
        assert metrics['submission']['filled_with_most_frequent_class'] == 0
        # the test accuracy the report states is the submission's, against the held-out labels
        labels = pd.read_csv(root/'test_labels.csv', dtype={'image_path': str}).set_index('image_path').target
        assert metrics['test_accuracy'] == (submission.target.to_numpy() == labels[submission.image_path].to_numpy()).mean()
    probs = np.load(reports/'convnextv2'/'test_probs.npz')
    predicted = dict(zip(probs['image_path'], probs['mean'].argmax(1), strict=True))
    submission = pd.read_csv(reports/'convnextv2'/'submission.csv', dtype={'image_path': str})
    assert all(t == predicted['test/' + p] for p, t in zip(submission.image_path, submission.target, strict=True)) # row by row
    assert (reports/'convnextv2'/'confusion_oof.csv').is_file() and (reports/'ensemble'/'confusion.csv').is_file()
    for page in sorted(reports.glob('*/report.html')): # each section opens with its summary (a sentence or a table of figures)
        assert unsummarised_sections(page.read_text(), max_rows=0, max_images=0) == [], page # every section, here


def test_a_wrong_root_stops_every_notebook_early_with_one_clear_error(tmp_path):
    root = as_shipped(clipart_slice(tmp_path/'data', 3))
    shutil.rmtree(root/'train') # the CSVs are there, the images are not unpacked
    papermill = [str(Path(sys.executable).parent/'papermill'), '--no-progress-bar', '--cwd', str(ROOT/'nbs')]
    common = ['-p', 'data', str(root), '-p', 'reports', str(tmp_path/'reports'), '-p', 'run_name', 'x']
    runs = {notebook: subprocess.Popen([*papermill, str(ROOT/'nbs'/notebook), str(tmp_path/notebook), *common], text=True,
                                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT) # side by side: they stop at start-up
            for notebook in ('eda.ipynb', 'dedup.ipynb', 'train.ipynb')}
    for notebook, proc in runs.items():
        output = proc.communicate(timeout=300)[0]
        assert proc.returncode != 0 and 'PapermillExecutionError' in output, (notebook, output[-2000:])
        assert 'DataError' in output and 'image paths checked resolve' in output, (notebook, output[-2000:])
    assert not list((tmp_path/'reports').glob('*/report.html'))
