"""GPU check: one fold of the `full` preset of convnextv2 (convnextv2_huge) and swin (swin_base_patch4_window7_224) at
224 px, limited batches, in bf16-mixed (16-mixed where bf16 is not supported), through dogcls's own training path.
Prints training images/s, prediction images/s and the peak GPU memory of each. Meant to finish within 8 minutes.

    bash bench/gpu.sh                     # on a machine with a CUDA GPU, after `make install`
    .venv/bin/python bench/gpu.py --dry-run   # the same code path on the CPU with the cpu presets (checks the script; --smoke too)

Weights are randomly initialised (the throughput does not depend on them, and the hub may be out of reach).
"""
import argparse, json, sys, tempfile, time
from pathlib import Path

import pandas as pd, torch

from dogcls.data import load_data
from dogcls.train import train_kfold


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--archs', default='convnextv2,swin')
    p.add_argument('--batches', type=int, default=40, help='training (and validation) batches of the one fold')
    p.add_argument('--batch_size', type=int, default=32)
    p.add_argument('--dry-run', '--smoke', action='store_true', help='run on the CPU with the cpu presets, a few batches')
    args = p.parse_args()
    gpu = torch.cuda.is_available()
    if not gpu and not args.dry_run: sys.exit('no CUDA GPU here: run this on a GPU machine, or pass --dry-run to check the script on the CPU')
    size, batches, batch_size = ('full', args.batches, args.batch_size) if not args.dry_run else ('cpu', 2, 8)
    manifest, _ = load_data() # the embedded set: 77 classes; images are decoded once into the cache
    print(f'device: {torch.cuda.get_device_name(0) if gpu else "CPU (dry run)"}; torch {torch.__version__}; '
          f'bf16: {gpu and torch.cuda.is_bf16_supported()}')
    for arch in args.archs.split(','):
        if gpu: torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats()
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            train_kfold(manifest, out, arch=arch, size=size, pretrained=False, epochs=1, folds=5, fold=0, batch_size=batch_size,
                        limit_batches=batches, log=lambda line: None)
            seconds = time.perf_counter() - start
            done = json.loads((Path(out)/'fold0'/'done.json').read_text())
            epoch = pd.read_csv(Path(out)/'fold0'/'history.csv').iloc[-1]
            predicted = (manifest.split == 'test').sum() + len(manifest[manifest.split == 'train']) // 5
        peak = torch.cuda.max_memory_allocated() / 2**30 if gpu else float('nan')
        print(f'{arch:12s} {size}: training {batches * batch_size / epoch.seconds:7.1f} img/s (one epoch of {batches} batches of '
              f'{batch_size}, validation included: {epoch.seconds:.1f} s), prediction ~{predicted / done["predict_seconds"]:7.1f} img/s, '
              f'peak GPU memory {peak:.2f} GiB, whole fold {seconds:.0f} s')


if __name__ == '__main__':
    main()
