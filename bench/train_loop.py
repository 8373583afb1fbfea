"""Training-loop overhead: images/s of dogcls's loop (Lightning, the DataModule with its cache and online
augmentation, metrics, logging) against a bare timm forward/backward/step loop on random tensors, same model, batch
size and resolution, measured in the same run (medians of several windows).

    .venv/bin/python bench/train_loop.py [--arch resnet] [--batch_size 32] [--steps 30] [--repeats 3] [--smoke]
"""
import argparse
import statistics
import time

import lightning as L
import torch

from dogcls.augment import train_transform
from dogcls.config import DataConfig, ModelConfig
from dogcls.data import load_data
from dogcls.loader import ImageCache, ImageDataModule, cache_side
from dogcls.models import create_model, data_config, eval_transform
from dogcls.train import Classifier, quiet_lightning


def bare(arch, num_classes, img_size, batch_size, warmup, steps) -> float:
    model = create_model(arch, num_classes, 'cpu', img_size, pretrained=False).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x, y = torch.randn(batch_size, 3, img_size, img_size), torch.randint(0, num_classes, (batch_size,))
    for i in range(warmup + steps):
        if i == warmup: start = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad(); loss.backward(); optimizer.step()
    return steps * batch_size / (time.perf_counter() - start)


class Timer(L.Callback):
    def __init__(self, warmup): self.warmup, self.start, self.end = warmup, None, None
    def on_train_batch_start(self, trainer, module, batch, i):
        if trainer.global_step == self.warmup: self.start = time.perf_counter()
    def on_train_batch_end(self, trainer, module, outputs, batch, i): self.end = time.perf_counter()


def dogcls_loop(arch, manifest, img_size, batch_size, warmup, steps, cache) -> float:
    module = Classifier(int(manifest.target.max()) + 1, ModelConfig(arch=arch, size='cpu', img_size=img_size, pretrained=False))
    config = data_config(module.model)
    dm = ImageDataModule(manifest, fold=0, data=DataConfig(batch_size=batch_size), train_transform=train_transform(config, 'randaugment+hflip'),
                         eval_transform=eval_transform(module.model), cache=cache, max_side=cache_side(img_size))
    timer = Timer(warmup)
    with quiet_lightning():
        trainer = L.Trainer(max_steps=warmup + steps, logger=False, enable_progress_bar=False, enable_model_summary=False,
                            enable_checkpointing=False, num_sanity_val_steps=0, limit_val_batches=0, callbacks=[timer],
                            accelerator='cpu', deterministic=True)
        trainer.fit(module, dm)
    return steps * batch_size / (timer.end - timer.start)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--arch', default='resnet')
    p.add_argument('--img_size', type=int, default=64)
    p.add_argument('--batch_size', type=int, default=32)
    p.add_argument('--steps', type=int, default=30)
    p.add_argument('--warmup', type=int, default=5)
    p.add_argument('--repeats', type=int, default=3)
    p.add_argument('--smoke', action='store_true', help='seconds on a slice of the embedded set: checks the script runs; its figures mean nothing')
    args = p.parse_args()
    manifest, _ = load_data()
    if args.smoke: args.img_size, args.batch_size, args.steps, args.warmup, args.repeats = 32, 8, 2, 1, 1
    cache = ImageCache(1024).preload(manifest.file, cache_side(args.img_size)) # later epochs: decoded images in memory
    n = int(manifest.target.max()) + 1
    ours, theirs = [], []
    for _ in range(args.repeats): # interleaved, so both see the same machine load
        theirs.append(bare(args.arch, n, args.img_size, args.batch_size, args.warmup, args.steps))
        ours.append(dogcls_loop(args.arch, manifest, args.img_size, args.batch_size, args.warmup, args.steps, cache))
    print(f'{args.arch} (cpu preset) at {args.img_size} px, batch {args.batch_size}, {args.steps} timed steps after {args.warmup}, '
          f'{args.repeats} repeats, {torch.get_num_threads()} threads')
    print(f'bare timm loop (random tensors):        {statistics.median(theirs):6.1f} images/s  {[round(v, 1) for v in theirs]}')
    print(f'dogcls loop (data, augmentation, Lightning): {statistics.median(ours):6.1f} images/s  {[round(v, 1) for v in ours]}')
    print(f'ratio dogcls / bare: {statistics.median(ours) / statistics.median(theirs):.2f} (of the medians); '
          f'{statistics.median(o / t for o, t in zip(ours, theirs, strict=True)):.2f} (median of the paired windows)')


if __name__ == '__main__':
    main()
