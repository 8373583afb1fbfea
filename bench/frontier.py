"""Accuracy against time for the demo's training settings on the embedded clipart set: each setting is a K-fold run
(the demo's dedup decisions applied), timed alone, with its out-of-fold accuracy, the mean test accuracy of its single
fold models and the test accuracy of its fold-averaged prediction; then the ensembles of the runs named by --ensemble
(dogcls.ensemble.ensemble: every combiner, the best chosen out-of-fold), with their gain over the best single model.

    .venv/bin/python bench/frontier.py [--within group|drop] \
        --setting lite0:arch=efficientnet_lite0 --setting lite1:arch=efficientnet_lite1,epochs=4 ... \
        [--ensemble lite0,lite1,lite2] [--out /tmp/frontier] [--fresh_store]

A setting is name:option=value,... with any TrainConfig option (arch, img_size, epochs, folds, policy, lr, freeze, head...).
--fresh_store gives each setting an empty feature store (and weights cache), so a frozen backbone's time includes its
feature extraction, as in a fresh clone; without it a later setting reads what an earlier one stored.
Run it alone on the machine: other jobs slow training several times over. --smoke: two tiny settings on 12 classes and their ensemble.
"""
import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import pandas as pd

from dogcls.config import TrainConfig
from dogcls.core import default_data_dir
from dogcls.data import load_data
from dogcls.dedup import WITHIN_POLICIES, apply_decisions, find_duplicates, propose_decisions
from dogcls.ensemble import TEST_MEASURES, best_of, ensemble, load_runs
from dogcls.train import merge_folds, train_kfold


def parse_setting(text:str)->tuple[str, dict]:
    "'name:key=value,...' -> (name, options), values read as JSON where they parse (numbers, booleans), text otherwise."
    name, _, rest = text.partition(':')
    options = {}
    for item in filter(None, rest.split(',')):
        key, _, value = item.partition('=')
        try: options[key.strip()] = json.loads(value)
        except json.JSONDecodeError: options[key.strip()] = value.strip()
    TrainConfig.from_flat(**options) # unknown options and bad values fail before any training
    return name, options


def decisions_for(manifest:pd.DataFrame, within:str, out:Path)->Path:
    "The dedup decisions the demo would apply (find_duplicates defaults), with the within-class policy `within`."
    pairs = find_duplicates(manifest).pairs
    path = out/f'decisions-{within}.csv'
    propose_decisions(manifest, pairs, within_policy=within).to_csv(path, index=False)
    return path


def run_seconds(folder:Path)->float:
    "Wall time of a finished run, summed over its folds (each fold's done.json), whichever invocation trained it."
    return sum(json.loads(p.read_text())['seconds'] for p in folder.glob('fold*/done.json'))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--setting', action='append', default=[], help='name:option=value,... (repeatable)')
    parser.add_argument('--ensemble', action='append', default=[], help='comma-separated setting names to ensemble (repeatable)')
    parser.add_argument('--within', default=WITHIN_POLICIES[0], choices=WITHIN_POLICIES, help='within-class dedup policy (default: dogcls\'s)')
    parser.add_argument('--data', default=str(default_data_dir()))
    parser.add_argument('--out', default='')
    parser.add_argument('--fresh_store', action='store_true', help='an empty feature store per setting: its time includes the extraction')
    parser.add_argument('--smoke', action='store_true', help='two tiny settings (2 folds, 1 epoch, 2 batches, 12 classes) and their ensemble, seconds')
    args = parser.parse_args()
    if args.smoke: # two tiny runs on one split, and their ensemble
        tiny = 'folds=2,epochs=1,limit_batches=2,img_size=64'
        args.setting = [f'lite0:arch=efficientnet_lite0,{tiny}', f'lite1:arch=efficientnet_lite1,freeze=backbone,head=mlp,{tiny}']
        args.ensemble, args.fresh_store = ['lite0,lite1'], True
    settings = dict(map(parse_setting, args.setting))
    if not settings: parser.error('name at least one --setting')
    out = Path(args.out or tempfile.mkdtemp(prefix='frontier-'))
    out.mkdir(parents=True, exist_ok=True)
    manifest, _ = load_data(args.data)
    if args.smoke: manifest = manifest[manifest.class_name.isin(manifest.class_name.unique()[:12])].reset_index(drop=True)
    start = time.perf_counter()
    manifest = apply_decisions(manifest, decisions_for(manifest, args.within, out))
    print(f'dedup decisions (within-class policy {args.within}): {len(manifest)} images left, {time.perf_counter() - start:.1f} s', flush=True)
    rows = []
    for name, options in settings.items():
        if args.fresh_store: os.environ['XDG_CACHE_HOME'] = str(out/'cache'/name)
        start = time.perf_counter()
        train_kfold(manifest, out/name, log=lambda *_: None, **options)
        seconds = time.perf_counter() - start
        overall = merge_folds(out/name).scores()['overall']
        features = out/name/'features.json' # a frozen backbone: the extraction's share of the time
        extraction = json.loads(features.read_text())['seconds'] if features.is_file() else None
        rows.append(dict(setting=name, options=options, seconds=round(seconds, 1), extraction=extraction,
                         oof=overall['oof_accuracy'], mean_fold_test=overall.get('mean_fold_test_accuracy'),
                         test=overall.get('test_accuracy')))
        print(' | '.join(f'{k} {v:.3f}' if isinstance(v, float) else f'{k} {v}' for k, v in rows[-1].items()), flush=True)
    print(pd.DataFrame(rows).to_string(index=False))
    for group in args.ensemble:
        names = group.split(',')
        table, _ = ensemble(load_runs(names, out))
        picked = best_of(table)
        gains = '; '.join(f'gain on the test accuracy of {TEST_MEASURES[c]} {g:+.3f}' for c, g in picked.gains.items())
        print(f'\nensemble of {group}: best single (out-of-fold) {picked.best_single}, best ensemble (out-of-fold) '
              f'{picked.best}; {gains}; training time {sum(run_seconds(out/n) for n in names):.0f} s')
        print(table[['model', 'kind', 'oof_accuracy', 'mean_fold_test_accuracy', 'test_accuracy']].to_string(index=False))
    if args.smoke and not args.out: shutil.rmtree(out) # a check, not a result: nothing left behind
    else: print(f'runs in {out}')


if __name__ == '__main__': main()
