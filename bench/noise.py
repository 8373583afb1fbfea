"""Planted label noise: does dogcls find images filed under the wrong class, and does removing them pay?

A copy of the embedded clipart set gets the labels of `--rate` of its training images flipped (seeded, each to another
class drawn uniformly); its test set is untouched. Then, each step through papermill as a user would run it:
  1. dedup on the clean set (its decisions are applied to every training run below, as `make demo` does);
  2. train `--arch` as `make demo` does, on the clean set (the baseline) and on the noisy copy;
  3. `label_issues` on the noisy run's out-of-fold probabilities: precision and recall of the flipped images among the
     top k (k = the number flipped), against two baselines ranked on the same probabilities: lowest self-confidence and
     highest loss (both rank the same way for one run; both are printed), and of the images flagged by confident learning;
  4. the clean notebook on the noisy run (its decisions: relabel or drop each label issue), then a retrain on the
     cleaned manifest: how much of the accuracy the noise cost comes back.

    .venv/bin/python bench/noise.py                  # every step (finished runs are reused)
    .venv/bin/python bench/noise.py --build-only     # only write the noisy copy and print where it is
    .venv/bin/python bench/noise.py --quick          # smoke settings (3 folds, 1 epoch, 3 batches): checks the wiring only
    .venv/bin/python bench/noise.py --smoke          # seconds: the noisy copy in a temporary folder, read back by load_data

Runs land in `--reports` (default: reports/ of the project, run names noise-*); re-running resumes finished folds.
Run it alone on the machine when you want its times; the accuracies do not depend on the load (same seed, CPU).
"""
import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def build(source: Path, dest: Path, rate: float, seed: int) -> pd.DataFrame:
    "Copy the data set to `dest` with `rate` of the training labels flipped; return the flipped rows (truth and noisy class)."
    train = pd.read_csv(source/'train.csv', dtype={'image_path': str, 'class_name': str})
    names = sorted(train.class_name.unique())
    rng = np.random.default_rng(seed)
    picked = rng.choice(len(train), size=round(rate * len(train)), replace=False)
    noisy = train.copy()
    flipped = []
    for i in sorted(picked):
        true = train.class_name.iloc[i]
        new = rng.choice([c for c in names if c != true])
        noisy.loc[i, 'class_name'] = new
        if 'target' in noisy: noisy.loc[i, 'target'] = names.index(new)
        flipped.append(dict(image_path=train.image_path.iloc[i], true_class=true, noisy_class=new))
    flipped = pd.DataFrame(flipped)
    recipe = dict(source=str(source), rate=rate, seed=seed, n_flipped=len(flipped))
    if (dest/'noise.json').is_file() and json.loads((dest/'noise.json').read_text()) == recipe: return pd.read_csv(dest/'flipped.csv')
    if dest.exists(): shutil.rmtree(dest)
    shutil.copytree(source, dest)
    noisy.to_csv(dest/'train.csv', index=False)
    flipped.to_csv(dest/'flipped.csv', index=False)
    (dest/'noise.json').write_text(json.dumps(recipe, indent=1))
    return flipped


def papermill(notebook: str, run_name: str, reports: Path, *params: str) -> float:
    out = reports/run_name
    out.mkdir(parents=True, exist_ok=True)
    argv = [str(Path(sys.executable).parent/'papermill'), '--no-progress-bar', '--cwd', 'nbs', f'nbs/{notebook}',
            str(out/notebook), '-p', 'run_name', run_name, '-p', 'reports', str(reports), *params]
    started = time.time()
    subprocess.run(argv, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return time.time() - started


def smoke_check(source: Path, rate: float, seed: int):
    "The noisy copy in a temporary folder, read back by load_data: the flipped labels are what the data set says."
    import tempfile

    from dogcls.data import load_data
    with tempfile.TemporaryDirectory() as d:
        flipped = build(source, Path(d)/'noisy', rate, seed)
        manifest, _ = load_data(Path(d)/'noisy', decode=False, scan_cache=False)
        given = manifest.set_index('image_path').class_name[flipped.image_path]
        print(f'noisy copy: {len(flipped)} training labels flipped; load_data reads {int((given.to_numpy() != flipped.true_class.to_numpy()).sum())} '
              'of them under another class than the true one')


def demo_args() -> list[str]:
    "The papermill arguments `make demo` trains with: the Makefile's DEMO_ARGS, read from it so that the two cannot drift."
    import re
    import shlex
    line = re.search(r'^DEMO_ARGS := (.+)$', (ROOT/'Makefile').read_text(), re.M)
    if not line: raise SystemExit('Makefile: no DEMO_ARGS line (the settings `make demo` trains with)')
    return shlex.split(line.group(1))


def metrics(reports: Path, run: str) -> dict: return json.loads((reports/run/'metrics.json').read_text())


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--rate', type=float, default=0.1)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--arch', default='efficientnet_lite0')
    parser.add_argument('--reports', type=Path, default=ROOT/'reports')
    parser.add_argument('--quick', action='store_true', help='smoke settings: checks the wiring, the figures mean nothing')
    parser.add_argument('--build-only', action='store_true')
    parser.add_argument('--stop-after-noisy', action='store_true', help='train the clean and noisy runs only')
    parser.add_argument('--smoke', action='store_true', help='the noisy copy in a temporary folder, read back (seconds)')
    args = parser.parse_args()
    from dogcls.core import cache_dir, default_data_dir
    source = default_data_dir()
    if args.smoke:
        print(f'make demo trains with: {" ".join(demo_args())}') # read as the full run reads them
        return smoke_check(source, args.rate, args.seed)
    dest = cache_dir()/f'clipart-noisy-{args.rate:g}-{args.seed}'
    flipped = build(source, dest, args.rate, args.seed)
    print(f'noisy copy: {dest} ({len(flipped)} of {len(pd.read_csv(source/"train.csv"))} training labels flipped)')
    if args.build_only: return
    suffix = '-quick' if args.quick else ''
    smoke = ['-p', 'folds', '3', '-p', 'epochs', '1', '-p', 'limit_batches', '3'] if args.quick else []
    reports, arch = args.reports.resolve(), args.arch
    seconds = {}
    seconds['dedup'] = papermill('dedup.ipynb', f'noise-dedup{suffix}', reports, '-p', 'data', str(source))
    decisions = str(reports/f'noise-dedup{suffix}'/'decisions.csv')
    demo = demo_args() # as `make demo` trains: the backbone frozen at its native size, an MLP head on stored features
    common = ['-p', 'arch', arch, '-p', 'dedup_decisions', decisions, *demo, *smoke]
    runs = {'clean': f'noise-{arch}-clean{suffix}', 'noisy': f'noise-{arch}-noisy{suffix}', 'cleaned': f'noise-{arch}-cleaned{suffix}'}
    seconds['train clean'] = papermill('train.ipynb', runs['clean'], reports, '-p', 'data', str(source), *common)
    seconds['train noisy'] = papermill('train.ipynb', runs['noisy'], reports, '-p', 'data', str(dest), *common)
    if args.stop_after_noisy: print(json.dumps(seconds, indent=1)); return

    from dogcls.clean import drop_empty_classes, label_issues, loss_ranking, self_confidence_ranking
    from dogcls.train import merge_folds
    run = merge_folds(reports/runs['noisy'])
    split = run.train_rows
    probs, targets, _, empty = drop_empty_classes(run.oof_probs, split.target.to_numpy())
    if empty: print(f'classes without a training image in the run (left out of confident learning): {empty}')
    truth = split.image_path.isin(set(flipped.image_path)).to_numpy()
    k = int(truth.sum())
    def at_k(order) -> tuple[float, float]:
        hits = truth[np.asarray(order)[:k]].sum()
        return hits / k, hits / k # precision and recall at k are equal when k = the number flipped
    started = time.time()
    issues = label_issues(probs, targets, image_paths=split.image_path.to_numpy())
    seconds['label_issues'] = time.time() - started
    position = pd.Series(np.arange(len(split)), index=split.image_path)
    ranked = position[issues.image_path].to_numpy()
    flagged = position[issues.image_path[issues.is_issue]].to_numpy()
    rows = {'confident learning (prune by noise rate), top k': at_k(ranked),
            'lowest self-confidence, top k': at_k(self_confidence_ranking(probs, targets)),
            'highest loss, top k': at_k(loss_ranking(probs, targets))}
    hits = truth[flagged].sum()
    rows['confident learning, its own flagged set'] = (hits / max(1, len(flagged)), hits / k)
    print(f'\nflipped training images: {k} of {len(split)} (after dedup decisions); flagged by confident learning: {len(flagged)}')
    print(f'{"ranking":52s} precision  recall')
    for name, (p, r) in rows.items(): print(f'{name:52s} {p:9.3f} {r:7.3f}')

    seconds['clean notebook'] = papermill('clean.ipynb', f'noise-clean{suffix}', reports, '-p', 'data', str(dest),
                                          '-p', 'runs', json.dumps([runs['noisy']]))
    clean_decisions = reports/f'noise-clean{suffix}'/'decisions.csv'
    chosen = pd.read_csv(clean_decisions)
    acted = chosen[chosen.action != 'keep']
    right = acted.image_path.isin(set(flipped.image_path))
    relabels = acted[acted.action == 'relabel'].merge(flipped, on='image_path', how='left')
    print(f'\nclean notebook decisions: {len(acted)} images acted on ({(acted.action == "drop").sum()} drop, '
          f'{(acted.action == "relabel").sum()} relabel); {right.sum()} of them flipped ({right.mean():.3f}); '
          f'relabelled to the true class: {(relabels.relabel_to == relabels.true_class).sum()} of {len(relabels)}')
    seconds['train cleaned'] = papermill('train.ipynb', runs['cleaned'], reports, '-p', 'data', str(dest), *common,
                                         '-p', 'clean_decisions', str(clean_decisions))
    scores = {name: metrics(reports, run) for name, run in runs.items()}
    print(f'\n{"run":10s} {"oof accuracy":>13s} {"test accuracy (fold-averaged prediction)":>42s}')
    for name, m in scores.items(): print(f'{name:10s} {m["oof_accuracy"]:13.4f} {m["test_accuracy"]:42.4f}')
    cost = scores['clean']['test_accuracy'] - scores['noisy']['test_accuracy']
    back = scores['cleaned']['test_accuracy'] - scores['noisy']['test_accuracy']
    print(f'test accuracy the noise cost: {cost:+.4f}; recovered by cleaning: {back:+.4f}'
          + (f' ({back / cost:.0%} of the cost)' if cost > 0 else ''))
    print('\nseconds:', json.dumps({k: round(v, 1) for k, v in seconds.items()}))


if __name__ == '__main__':
    main()
