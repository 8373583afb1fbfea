"""GPU check: one fold of each `full` preset with its own settings (dogcls.config.FULL_PRESETS: batch size, gradient
accumulation, gradient checkpointing, learning rate) through dogcls's own training path, a few batches, in bf16-mixed
(16-mixed where bf16 is not supported); then the same backbone frozen: feature extraction into a store of its own.
Prints training images/s, prediction images/s, extraction images/s and the peak GPU memory of each, so that the
estimates of bench/presets.py can be replaced by measurements. Meant to finish within 8 minutes.

    bash bench/gpu.sh                     # on a machine with a CUDA GPU, after `make install`
    bash bench/gpu.sh --archs eva02_large # one preset
    .venv/bin/python bench/gpu.py --dry-run   # the same code path on the CPU, cpu presets, 12 classes (checks the script; --smoke too)

Weights are randomly initialised (the throughput does not depend on them, and the hub may be out of reach).
"""
import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from dogcls.config import FULL_PRESETS
from dogcls.data import load_data
from dogcls.features import FeatureStore
from dogcls.models import create_model
from dogcls.train import train_kfold


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--archs', default='eva02_large,eva_giant,vit_clip,convnextv2,swin')
    p.add_argument('--batches', type=int, default=16, help='training (and validation) batches of the one fold')
    p.add_argument('--dry-run', '--smoke', action='store_true', help='run on the CPU with the cpu presets, a few batches')
    args = p.parse_args()
    gpu = torch.cuda.is_available()
    if not gpu and not args.dry_run: sys.exit('no CUDA GPU here: run this on a GPU machine, or pass --dry-run to check the script on the CPU')
    size, batches = ('full', args.batches) if not args.dry_run else ('cpu', 2)
    manifest, _ = load_data() # the embedded set: 77 classes; images are decoded once into the cache
    if args.dry_run: # the code path, not the figures: 12 classes (about a sixth of the images to train on and predict)
        manifest = manifest[manifest.class_name.isin(manifest.class_name.unique()[:12])].reset_index(drop=True)
    print(f'device: {torch.cuda.get_device_name(0) if gpu else "CPU (dry run)"}; torch {torch.__version__}; '
          f'bf16: {gpu and torch.cuda.is_bf16_supported()}')
    for arch in args.archs.split(','):
        preset = {k: v for k, v in FULL_PRESETS.get(arch, {}).items() if not args.dry_run or k not in ('batch_size', 'accumulate_grad_batches')}
        batch_size = preset.get('batch_size', 32) if not args.dry_run else 8
        if gpu: torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats()
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            train_kfold(manifest, out, **{**preset, 'arch': arch, 'size': size, 'pretrained': False, 'epochs': 1, 'folds': 5,
                                          'fold': 0, 'batch_size': batch_size, 'limit_batches': batches}, log=lambda line: None)
            seconds = time.perf_counter() - start
            done = json.loads((Path(out)/'fold0'/'done.json').read_text())
            epoch = pd.read_csv(Path(out)/'fold0'/'history.csv').iloc[-1]
            predicted = (manifest.split == 'test').sum() + len(manifest[manifest.split == 'train']) // 5
        peak = torch.cuda.max_memory_allocated() / 2**30 if gpu else float('nan')
        print(f'{arch:12s} {size}, batch {batch_size} x {preset.get("accumulate_grad_batches", 1)}'
              f'{" (checkpointing)" if preset.get("grad_checkpointing") else ""}: training {batches * batch_size / epoch.seconds:7.1f} img/s '
              f'(one epoch of {batches} batches, validation included: {epoch.seconds:.1f} s), prediction ~{predicted / done["predict_seconds"]:7.1f} img/s, '
              f'peak GPU memory {peak:.2f} GiB, whole fold {seconds:.0f} s', flush=True)
        if gpu: torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats()
        with tempfile.TemporaryDirectory() as root:
            store = FeatureStore(create_model(arch, 0, size, pretrained=False), root=root)
            rows = manifest.head(256 if gpu else 16)
            done = store.extract(rows.file, rows.sha1, ('none', 'h'), batch_size=64 if gpu else 8)
        peak = torch.cuda.max_memory_allocated() / 2**30 if gpu else float('nan')
        print(f'{arch:12s} {size} frozen: feature extraction {done.images_per_second:7.1f} img/s (2 views, {store.spec.precision}), '
              f'peak GPU memory {peak:.2f} GiB', flush=True)
        del store


if __name__ == '__main__':
    main()
