"""Adversarial validation on the embedded set: ROC AUC of a classifier telling training from test images, on the test
split as shipped (expected near 0.5) and on two deliberately shifted test splits (expected well above 0.5):
  - few classes: only the test images of 5 classes;
  - recoloured: every test image with its colour channels rotated (RGB -> BRG), the same drawings otherwise.
Both embedding backends are measured; the time of each embedding pass is printed.

    .venv/bin/python bench/adversarial.py [--backends efficientnet_lite0,pixels] [--smoke]
"""
import argparse
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--backends', default='efficientnet_lite0,pixels')
    parser.add_argument('--smoke', action='store_true', help='seconds on a slice of the embedded set: checks the script runs; its figures mean nothing')
    args = parser.parse_args()
    from dogcls.clean import adversarial_validation
    from dogcls.data import load_data
    from dogcls.dedup import embed
    manifest, _ = load_data()
    if args.smoke: args.backends, manifest = 'pixels', manifest.groupby('split').head(60).reset_index(drop=True)
    is_test = (manifest.split == 'test').to_numpy()
    test = manifest[is_test].reset_index(drop=True)
    few = test.target.isin(sorted(test.target.unique())[:5]).to_numpy()
    with tempfile.TemporaryDirectory() as d:
        files = []
        for i, f in enumerate(test.file):
            r, g, b = Image.open(f).convert('RGB').split()
            files.append(Path(d)/f'{i}.png'); Image.merge('RGB', (b, r, g)).save(files[-1])
        # new files, new content: their hashes are not the originals' (the feature store reads features by hash)
        recoloured = test.drop(columns='sha1').assign(file=[str(f) for f in files])
        print(f'embedded set: {(~is_test).sum()} training and {is_test.sum()} test images')
        print(f'{"backend":20s} {"test split":28s} {"test images":>11s} {"ROC AUC":>8s} {"AUC per fold":>40s}')
        for backend in args.backends.split(','):
            started = time.time()
            emb = embed(manifest, backend, views=('none',))[:, 0]
            shifted = embed(recoloured, backend, views=('none',))[:, 0]
            seconds = time.time() - started
            train, tested = emb[~is_test], emb[is_test]
            for name, other in [('as shipped', tested), ('5 classes only', tested[few]), ('recoloured (RGB -> BRG)', shifted)]:
                result = adversarial_validation(train, other)
                print(f'{backend:20s} {name:28s} {len(other):11d} {result.auc:8.3f} {str(result.auc_per_fold):>40s}')
            print(f'{backend:20s} embedding {len(manifest) + len(recoloured)} images: {seconds:.1f} s')


if __name__ == '__main__':
    main()
