"""The `full` presets by the numbers: parameters, forward FLOPs per image at the preset's size, and the batch estimated to
fit one 32 GB GPU, fine-tuned and frozen; with --cpu_check, a forward and backward pass at batch 1 on the CPU.

    .venv/bin/python bench/presets.py [--archs eva02_large,eva_giant,...] [--cpu_check]
    .venv/bin/python bench/presets.py --smoke     # seconds: the cpu presets of two aliases

How the figures are made. Models are built on torch's `meta` device (shapes only: no memory, no arithmetic), so even
EVA-giant costs nothing. FLOPs: `torch.utils.flop_counter.FlopCounterMode` over one forward pass at batch 1 (a
multiply-add counts 2; training costs about 3 times the forward). Activation bytes: a dispatch mode adds up the
bytes of every tensor an operation returns in that forward pass, in bfloat16 (2 bytes), as mixed precision on a GPU
stores them: an upper bound of what backward keeps (views and in-place results are counted too). With gradient
checkpointing (timm's `set_grad_checkpointing`: the blocks' inputs are kept, each block's inside recomputed in the
backward pass) the estimate is the blocks' outputs plus the largest block's inside. Fine-tuning also holds 16 bytes
per parameter (float32 weights and gradients, AdamW's two moments); a frozen backbone (features extracted under
bfloat16 autocast) 4 bytes per parameter and the largest block's inside per image. A batch is estimated to fit when
these, plus 10 % of the 32 GiB for the allocator and the CUDA context, stay under 32 GiB. Estimates, not
measurements: `bash bench/gpu.sh` measures peak memory and images/s where a GPU exists.
"""
import argparse
import time

import pandas as pd
import timm
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from dogcls.config import FULL_PRESETS
from dogcls.models import resolve_arch

GIB = 2**30


class OutputBytes(TorchDispatchMode):
    "Adds up the bytes (at 2 bytes an element) of every tensor the operations return."
    def __init__(self):
        super().__init__(); self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in (out if isinstance(out, (tuple, list)) else [out]):
            if isinstance(t, torch.Tensor): self.total += t.numel() * 2
        return out


def blocks(model: torch.nn.Module) -> list[torch.nn.Module]:
    "The blocks timm checkpoints: the children of every `blocks` sequence (ViT/EVA: model.blocks; ConvNeXt, Swin: per stage)."
    out = []
    for name, module in model.named_modules():
        if name.split('.')[-1] == 'blocks' and isinstance(module, (torch.nn.Sequential, torch.nn.ModuleList)): out += list(module)
    return out


def profile(name: str, extra: dict, size: int) -> dict:
    "Parameters, forward FLOPs and activation bytes (all, block outputs, largest block inside) at batch 1, on meta."
    kwargs = dict(extra)
    if any(f in name for f in ('swin', 'vit', 'eva')): kwargs['img_size'] = size
    with torch.device('meta'): model = timm.create_model(name, pretrained=False, **kwargs).eval()
    x = torch.empty(1, 3, size, size, device='meta')
    counter = OutputBytes()
    inside, outputs = [], []
    def before(module, args): module._start = counter.total
    def after(module, args, out):
        inside.append(counter.total - module._start); outputs.append(out.numel() * 2 if isinstance(out, torch.Tensor) else 0)
    hooks = [h for b in blocks(model) for h in (b.register_forward_pre_hook(before), b.register_forward_hook(after))]
    flops = FlopCounterMode(display=False)
    with torch.no_grad(), flops, counter: model(x)
    for h in hooks: h.remove()
    params = sum(p.numel() for p in model.parameters())
    return dict(params=params, gflops=flops.get_total_flops() / 1e9, act=counter.total, blocks=len(inside),
                act_checkpointed=sum(outputs) + max(inside, default=counter.total), largest_block=max(inside, default=counter.total))


def fits(budget: float, fixed: float, per_image: float) -> int:
    return max(0, int((budget - fixed) // per_image)) if per_image else 0


def table(archs: list[str], size_name: str = 'full') -> pd.DataFrame:
    rows, budget = [], 32 * GIB * 0.9
    for alias in archs:
        name, extra, size = resolve_arch(alias, size_name)
        p = profile(name, extra, size)
        preset = FULL_PRESETS.get(alias, {})
        tuned = fits(budget, 16 * p['params'], p['act'])
        tuned_ckpt = fits(budget, 16 * p['params'], p['act_checkpointed'])
        frozen = min(1024, fits(budget, 4 * p['params'], p['largest_block']))
        rows.append({'alias': alias, 'timm model': name, 'px': size, 'parameters (M)': round(p['params'] / 1e6, 1),
                     'forward GFLOPs / image': round(p['gflops'], 1), 'activations / image (MiB, bf16)': round(p['act'] / 2**20),
                     'fine-tuned: batch est. to fit 32 GB': tuned, 'with grad checkpointing': tuned_ckpt,
                     'frozen: batch est. to fit 32 GB': frozen,
                     'preset batch x accumulation': f'{preset.get("batch_size", 32)} x {preset.get("accumulate_grad_batches", 1)}'
                     + (' (checkpointing)' if preset.get('grad_checkpointing') else '')})
    return pd.DataFrame(rows)


def cpu_check(archs: list[str]):
    "Build each at its full size with random weights, run one forward and one backward pass at batch 1 on the CPU."
    from dogcls.models import create_model
    for alias in archs:
        start = time.perf_counter()
        model = create_model(alias, 10, 'full', pretrained=False, check=False).train()
        side = model.dogcls.img_size
        loss = model(torch.randn(1, 3, side, side)).logsumexp(-1).sum()
        loss.backward()
        grads = sum(p.grad is not None for p in model.parameters())
        print(f'{alias} ({model.dogcls.arch}) at {side} px: forward and backward at batch 1 on the CPU in '
              f'{time.perf_counter() - start:.1f} s, gradients on {grads} of {len(list(model.parameters()))} tensors', flush=True)
        del model, loss


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--archs', default='resnet,resnext,swin,convnextv2,vit_clip,eva02_large,eva_giant')
    p.add_argument('--cpu_check', action='store_true', help='also build each at its full size and run forward and backward at batch 1 on the CPU (minutes)')
    p.add_argument('--smoke', action='store_true', help='seconds: the cpu presets of swin and eva02_large, and their CPU check')
    args = p.parse_args()
    archs = args.archs.split(',')
    if args.smoke:
        print(table(['swin', 'eva02_large'], 'cpu').to_string(index=False)); return
    with pd.option_context('display.width', 250, 'display.max_columns', 20):
        print(table(archs).to_string(index=False))
    if args.cpu_check: cpu_check([a for a in archs if a in ('eva02_large', 'eva_giant')])


if __name__ == '__main__': main()
