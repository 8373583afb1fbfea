"Experiment trackers: a tiny real K-fold run lands in each tracker, read back with the tracker's own reader, offline."
import json

import pytest
from conftest import CLIPART

from dogcls.core import DataError
from dogcls.data import load_data
from dogcls.track import log_run
from dogcls.train import train_kfold

FAST = dict(arch='resnet', size='cpu', img_size=32, epochs=2, batch_size=8, folds=2, limit_batches=2, log=lambda line: None)
EPOCH_METRICS = {'train_loss', 'train_acc', 'val_loss', 'val_acc'}


@pytest.fixture(scope='module')
def tiny():
    manifest, _ = load_data(CLIPART)
    return manifest[manifest.class_name.isin(sorted(manifest.class_name.unique())[:3])].reset_index(drop=True)


@pytest.fixture(autouse=True)
def no_tracker_env(monkeypatch):
    for name in ('MLFLOW_TRACKING_URI', 'MLFLOW_EXPERIMENT_NAME', 'WANDB_MODE', 'WANDB_PROJECT'): monkeypatch.delenv(name, raising=False)


def finish(out):
    "What the train notebook's finish_run leaves in the run folder before log_run."
    metrics = dict(kind='train', run_name=out.name, oof_accuracy=0.5, test_accuracy=0.25, seconds=12.5, per_fold=[{'fold': 0}])
    (out/'metrics.json').write_text(json.dumps(metrics))
    (out/'report.html').write_text('<html>report</html>')
    (out/'submission.csv').write_text('ID,image_path,target\n')
    return metrics


def test_unknown_logger_is_refused_before_training(tiny, tmp_path):
    with pytest.raises(DataError, match="logger='comet': choose one of csv, tensorboard, mlflow, wandb, none"):
        train_kfold(tiny, tmp_path/'run', logger='comet', **FAST)
    assert not (tmp_path/'run').exists()


def test_csv_is_the_default(tiny, tmp_path):
    import pandas as pd
    out = tmp_path/'run'
    train_kfold(tiny, out, **FAST)
    for k in range(2):
        epochs = pd.read_csv(out/f'logs/fold{k}/metrics.csv')
        assert EPOCH_METRICS <= set(epochs.columns)
        assert epochs.epoch.dropna().astype(int).unique().tolist() == [0, 1]
        hparams = (out/f'logs/fold{k}/hparams.yaml').read_text()
        assert 'arch: resnet' in hparams and f'fold: {k}' in hparams
    where = log_run(out, finish(out))
    summary = pd.read_csv(out/'logs/summary/metrics.csv')
    assert str(out/'logs/summary') == where and summary.oof_accuracy.item() == 0.5 and summary.test_accuracy.item() == 0.25


def test_tensorboard_events_read_back(tiny, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    out = tmp_path/'run'
    train_kfold(tiny, out, logger='tensorboard', **FAST)
    events = EventAccumulator(str(out/'tensorboard/fold1')); events.Reload()
    assert EPOCH_METRICS <= set(events.Tags()['scalars'])
    assert len(events.Scalars('val_loss')) == 2 # one per epoch
    log_run(out, finish(out))
    summary = EventAccumulator(str(out/'tensorboard/summary')); summary.Reload()
    assert summary.Scalars('oof_accuracy')[0].value == 0.5


def test_mlflow_store_has_the_run(tiny, tmp_path, monkeypatch):
    import mlflow
    monkeypatch.chdir(tmp_path) # nothing may land in the working directory (MLflow's default artifact root is ./mlruns)
    out = tmp_path/'reports'/'run'
    train_kfold(tiny, out, logger='mlflow', **FAST)
    log_run(out, finish(out))
    uri = f'sqlite:///{tmp_path/"reports"/"mlflow.db"}' # the default store: next to the run folders
    assert json.loads((out/'tracker.json').read_text())['tracking_uri'] == uri
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=['dogcls'])
    parent = runs[runs['tags.mlflow.runName'] == 'run']
    assert len(parent) == 1 and parent['params.arch'].item() == 'resnet' and parent['params.folds'].item() == '2'
    assert parent['metrics.oof_accuracy'].item() == 0.5 and parent['metrics.test_accuracy'].item() == 0.25
    assert parent['status'].item() == 'FINISHED'
    folds = runs[runs['tags.mlflow.parentRunId'] == parent.run_id.item()]
    assert sorted(folds['tags.dogcls.fold']) == ['0', '1'] and folds['metrics.val_loss'].notna().all()
    artifacts = {a.path for a in mlflow.MlflowClient(uri).list_artifacts(parent.run_id.item())}
    assert {'report.html', 'metrics.json', 'submission.csv'} <= artifacts
    assert sorted(p.name for p in tmp_path.iterdir()) == ['reports'] and (tmp_path/'reports'/'mlartifacts').is_dir()


def wandb_records(path):
    "The records of an offline W&B run file (run-<id>.wandb: a LevelDB-style log of W&B's protobuf records), as `wandb sync` reads them."
    import struct

    from wandb.proto import wandb_internal_pb2
    data, block, pos, parts = path.read_bytes(), 32768, 7, b''
    assert data[:4] == b':W&B'
    while pos + 7 <= len(data):
        if block - pos % block < 7: pos += block - pos % block; continue # block trailer
        _, length, kind = struct.unpack('<IHB', data[pos:pos + 7]); pos += 7
        parts += data[pos:pos + length]; pos += length
        if kind in (1, 4): # a full record, or the last chunk of one
            record = wandb_internal_pb2.Record(); record.ParseFromString(parts); parts = b''
            yield record


def test_wandb_offline_writes_its_runs(tiny, tmp_path):
    out = tmp_path/'run'
    train_kfold(tiny, out, logger='wandb', **FAST)
    where = log_run(out, finish(out))
    assert '(offline)' in where
    runs = {}
    for path in (out/'wandb').glob('offline-run-*/run-*.wandb'):
        found = dict(history=set(), summary={}, config=set(), artifacts=[])
        for r in wandb_records(path):
            kind = r.WhichOneof('record_type')
            key = lambda item: item.key or '/'.join(item.nested_key)
            if kind == 'run': found.update(name=r.run.display_name, group=r.run.run_group, job=r.run.job_type)
            if kind == 'history': found['history'] |= {key(i) for i in r.history.item}
            if kind == 'summary': found['summary'].update({key(i): json.loads(i.value_json) for i in r.summary.update})
            if kind == 'config': found['config'] |= {key(i) for i in r.config.update}
            if kind == 'artifact': found['artifacts'] += [m.path for m in r.artifact.manifest.contents]
        runs[found['name']] = found
    assert sorted(runs) == ['run-fold0', 'run-fold1', 'run-summary'] and {r['group'] for r in runs.values()} == {'run'}
    for k in range(2):
        assert EPOCH_METRICS <= runs[f'run-fold{k}']['history'] and {'arch', 'lr', 'fold'} <= runs[f'run-fold{k}']['config']
    summary = runs['run-summary']
    assert summary['summary']['oof_accuracy'] == 0.5 and summary['summary']['test_accuracy'] == 0.25
    assert sorted(summary['artifacts']) == ['metrics.json', 'report.html', 'submission.csv']
