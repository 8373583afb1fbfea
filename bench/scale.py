"""Scale benchmark: a deterministic synthetic data set at the reference competition's size (500 classes, 30 train and
20 test JPEGs per class, 300-800 px, about 200 planted near-duplicates), written in the competition's own layout
(train.csv paths relative to train/, test.csv paths relative to test/), then eda, dedup, a smoke-size train of two
architectures and the ensemble, each run through papermill as a user would, on this set and on the embedded set.
Prints per step the wall time, the peak resident memory of the whole process tree, and the growth ratio.

    .venv/bin/python bench/scale.py                 # build (once, cached) and run every step on both sets
    .venv/bin/python bench/scale.py --build-only    # only build the data set and print where it is
    .venv/bin/python bench/scale.py --steps eda,dedup --sets scale
    .venv/bin/python bench/scale.py --smoke         # seconds: eda through papermill on the embedded set only (checks the runner)

The images are made from Debian's public-domain `openclipart-png` drawings (`apt-get install openclipart-png`), one
drawing per class, by random crop, rotation, scale, flips, colour jitter and noise. The set is cached outside the
repository (`$XDG_CACHE_HOME/dogcls/scale-<version>`, default `~/.cache/dogcls/...`) and reused when its build.json
matches. Run it alone on the machine: other jobs share the cores and the times mean nothing then.
"""
import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SOURCE = Path('/usr/share/openclipart/png')
VERSION = 1 # bump when the recipe changes: a cached set of another version is rebuilt


def cache_root() -> Path:
    return Path(os.environ.get('XDG_CACHE_HOME', Path.home()/'.cache'))/'dogcls'


def source_drawings(source: Path, n: int, seed: int) -> list[Path]:
    "n distinct, non-blank drawings of the package, drawn with a seed from the sorted file list."
    files = sorted(source.rglob('*.png'))
    if not files: sys.exit(f'{source}: no PNG drawings; install them with: apt-get install openclipart-png')
    order = np.random.default_rng(seed).permutation(len(files))
    picked, seen = [], set()
    for i in order:
        f = files[i]
        if f.stat().st_size > 4_000_000: continue # the package's decompression bombs and giant posters
        digest = hashlib.sha1(f.read_bytes()).hexdigest()
        if digest in seen: continue
        drawing = load_drawing(f)
        if drawing is None: continue
        seen.add(digest); picked.append(f)
        if len(picked) == n: return picked
    sys.exit(f'{source}: only {len(picked)} usable drawings, {n} needed')


def load_drawing(path: Path, side: int = 640):
    "The drawing composited onto white, longer side `side`, as uint8 BGR; None when it is blank or unreadable."
    im = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if im is None or im.ndim != 3 or min(im.shape[:2]) < 16 or im.shape[0] * im.shape[1] > 40_000_000: return None
    if im.shape[2] == 4:
        alpha = im[..., 3:4].astype(np.float32) / 255
        im = (im[..., :3] * alpha + 255 * (1 - alpha)).astype(np.uint8)
    scale = side / max(im.shape[:2])
    im = cv2.resize(im, (max(1, round(im.shape[1] * scale)), max(1, round(im.shape[0] * scale))), interpolation=cv2.INTER_AREA)
    ink = (im.min(-1) < 200).mean()
    return im if 0.01 < ink < 0.95 else None


def augment(drawing: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    "One random view: canvas 300-800 px, scale, rotation, shift, flips, colour jitter and noise."
    w, h = (int(v) for v in rng.integers(300, 801, 2))
    dh, dw = drawing.shape[:2]
    scale = rng.uniform(0.55, 1.05) * min(w / dw, h / dh)
    angle = rng.uniform(-30, 30)
    matrix = cv2.getRotationMatrix2D((dw / 2, dh / 2), angle, scale)
    matrix[:, 2] += (w / 2 - dw / 2 + rng.uniform(-0.15, 0.15) * w, h / 2 - dh / 2 + rng.uniform(-0.15, 0.15) * h)
    out = cv2.warpAffine(drawing, matrix, (w, h), flags=cv2.INTER_LINEAR, borderValue=(255, 255, 255))
    if rng.random() < 0.5: out = out[:, ::-1]
    if rng.random() < 0.15: out = out[::-1]
    gain = rng.uniform(0.75, 1.15, 3) # per-channel gain: colour jitter
    out = cv2.convertScaleAbs(out * gain.astype(np.float32), alpha=rng.uniform(0.8, 1.1), beta=rng.uniform(-20, 25))
    sigma = rng.uniform(0, 10)
    if sigma > 1:
        noise = rng.standard_normal((h // 4 + 1, w // 4 + 1, 1), dtype=np.float32) * sigma # low-res grain, upsampled
        out = cv2.add(out, cv2.resize(noise, (w, h), interpolation=cv2.INTER_NEAREST)[..., None].repeat(3, -1), dtype=cv2.CV_8U)
    return np.ascontiguousarray(out)


def near_copy(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    "A planted near-duplicate: flipped, resized, recompressed or brightened."
    kind = ['hflip', 'resize', 'jpeg', 'brightness'][int(rng.integers(4))]
    if kind == 'hflip': return np.ascontiguousarray(image[:, ::-1]), kind
    if kind == 'resize':
        s = rng.uniform(0.6, 0.9)
        return cv2.resize(image, (round(image.shape[1] * s), round(image.shape[0] * s)), interpolation=cv2.INTER_AREA), kind
    if kind == 'jpeg': return image, kind # re-encoded below at low quality
    return cv2.convertScaleAbs(image, alpha=1.0, beta=rng.uniform(-25, 25)), kind


def write_jpeg(path: Path, image: np.ndarray, quality: int):
    ok, data = cv2.imencode('.JPEG', image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok: raise RuntimeError(f'cannot encode {path}')
    path.write_bytes(data.tobytes())


def build(dest: Path, classes: int = 500, train_per_class: int = 30, test_per_class: int = 20, planted: int = 200,
          seed: int = 0, source: Path = SOURCE, threads: int | None = None) -> dict:
    "Write the data set into `dest` (a new folder) in the competition's layout; returns its build record."
    started = time.time()
    drawings = source_drawings(source, classes, seed)
    tmp = Path(tempfile.mkdtemp(prefix='.building-', dir=dest.parent))
    names, used = [], set()
    for f in drawings: # readable class names from the file stems, made unique
        base = f.stem.lower().replace(' ', '_')[:40] or 'drawing'
        name, k = base, 2
        while name in used: name, k = f'{base}_{k}', k + 1
        used.add(name); names.append(name)
    wnids = [f'n{9_000_000 + 1_000 * c + seed:08d}' for c in range(classes)]
    jobs = [] # (class, index within class, split)
    for c in range(classes):
        jobs += [(c, j, 'train') for j in range(train_per_class)] + [(c, j, 'test') for j in range(test_per_class)]
    test_order = np.random.default_rng(seed + 1).permutation(classes * test_per_class) # test files are numbered in a shuffled order
    test_number = {}
    for k, (c, j, _) in enumerate(job for job in jobs if job[2] == 'test'): test_number[(c, j)] = int(test_order[k])
    for w in wnids: (tmp/'train'/w).mkdir(parents=True)
    (tmp/'test').mkdir()
    cache = {}
    lock = threading.Lock()

    def drawing(c):
        with lock:
            if c not in cache: cache[c] = load_drawing(drawings[c])
            return cache[c]

    def make(job):
        c, j, split = job
        rng = np.random.default_rng([seed, c, j, split == 'test'])
        image = augment(drawing(c), rng)
        path = tmp/'train'/wnids[c]/f'sketch_{j}.JPEG' if split == 'train' else tmp/'test'/f'{test_number[(c, j)]}.JPEG'
        write_jpeg(path, image, rng.integers(85, 96))
        return path

    with ThreadPoolExecutor(threads or os.cpu_count() or 1) as pool: list(pool.map(make, jobs))
    # planted near-duplicates: copies of training images, within the class, into another class, or into test
    rng = np.random.default_rng(seed + 2)
    planted_rows, extra_train, extra_test = [], [], []
    next_index = {c: train_per_class for c in range(classes)}
    next_test = classes * test_per_class
    for p in range(planted):
        c, j = int(rng.integers(classes)), int(rng.integers(train_per_class))
        source_path = f'{wnids[c]}/sketch_{j}.JPEG'
        image, kind = near_copy(cv2.imread(str(tmp/'train'/source_path)), rng)
        where = ['within class', 'within class', 'across classes', 'train-test'][p % 4]
        if where == 'train-test':
            path = f'{next_test}.JPEG'; next_test += 1
            write_jpeg(tmp/'test'/path, image, 60 if kind == 'jpeg' else 90)
            extra_test.append((path, c)); copy = f'test/{path}'
        else:
            target = c if where == 'within class' else int((c + 1 + rng.integers(classes - 1)) % classes)
            path = f'{wnids[target]}/sketch_{next_index[target]}.JPEG'; next_index[target] += 1
            write_jpeg(tmp/'train'/path, image, 60 if kind == 'jpeg' else 90)
            extra_train.append((path, target)); copy = f'train/{path}'
        planted_rows.append(dict(source=f'train/{source_path}', copy=copy, kind=kind, where=where))
    train_rows = [(f'{wnids[c]}/sketch_{j}.JPEG', c) for c in range(classes) for j in range(train_per_class)] + extra_train
    with open(tmp/'train.csv', 'w') as f:
        f.write('class_name,image_path,target\n')
        f.writelines(f'{names[c]},{p},{c}\n' for p, c in sorted(train_rows, key=lambda r: (r[1], r[0])))
    test_rows = sorted([(f'{test_number[(c, j)]}.JPEG', c) for c in range(classes) for j in range(test_per_class)] + extra_test,
                       key=lambda r: int(r[0].split('.')[0]))
    (tmp/'test.csv').write_text('image_path\n' + ''.join(f'{p}\n' for p, _ in test_rows))
    (tmp/'test_labels.csv').write_text('image_path,target\n' + ''.join(f'{p},{c}\n' for p, c in test_rows))
    with open(tmp/'planted.csv', 'w') as f:
        f.write('source,copy,kind,where\n')
        f.writelines(f'{r["source"]},{r["copy"]},{r["kind"]},{r["where"]}\n' for r in planted_rows)
    record = dict(version=VERSION, classes=classes, train_per_class=train_per_class, test_per_class=test_per_class,
                  planted=planted, seed=seed, source=str(source), train_images=len(train_rows), test_images=len(test_rows),
                  bytes=sum(p.stat().st_size for p in tmp.rglob('*') if p.is_file()), build_seconds=round(time.time() - started, 1))
    (tmp/'build.json').write_text(json.dumps(record, indent=2))
    os.replace(tmp, dest)
    return record


def scale_set(args) -> Path:
    "The cached scale set, built if missing or made by another recipe."
    key = dict(version=VERSION, classes=args.classes, train_per_class=30, test_per_class=20, planted=200, seed=0)
    dest = cache_root()/f'scale-v{VERSION}-{args.classes}'
    if (dest/'build.json').is_file():
        record = json.loads((dest/'build.json').read_text())
        if all(record.get(k) == v for k, v in key.items()): return dest
        shutil.rmtree(dest) # our own cache, made by another recipe
    dest.parent.mkdir(parents=True, exist_ok=True)
    print(f'building {dest} ...', flush=True)
    record = build(dest, classes=args.classes)
    print(f'built in {record["build_seconds"]:.0f} s: {record["train_images"]:,} train and {record["test_images"]:,} test images, '
          f'{record["bytes"] / 2**30:.2f} GiB', flush=True)
    return dest


def run_step(argv: list[str], env: dict) -> tuple[float, float, int]:
    "Run one command; (wall seconds, peak RSS of its whole process tree in GiB, return code)."
    import psutil
    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = 0
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True); reader.start()
    root = psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            total = sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])
            peak = max(peak, total)
        except psutil.Error: pass
        time.sleep(0.25)
    reader.join()
    if proc.returncode: print(''.join(lines[-40:]), file=sys.stderr)
    return time.perf_counter() - start, peak / 2**30, proc.returncode


def open_in_chromium(pages: list[Path]) -> dict:
    "Seconds until each page has loaded (navigation timing's loadEventEnd) in headless Chromium, median of 3 loads."
    import shutil

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    if not (shutil.which('chromium') and shutil.which('chromedriver')): return {}
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which('chromium')
    for arg in ('--headless=new', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
                '--disable-sync', '--no-first-run', '--window-size=1300,1800', f'--user-data-dir={tempfile.mkdtemp()}'):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(shutil.which('chromedriver')), options=options)
    try:
        times = {}
        for page in pages:
            loads = []
            for _ in range(3):
                driver.get(page.as_uri())
                loads.append(driver.execute_script('const t = performance.getEntriesByType("navigation")[0]; return t.loadEventEnd / 1000;'))
            times[page] = statistics.median(loads)
        return times
    finally: driver.quit()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--classes', type=int, default=500)
    p.add_argument('--build-only', action='store_true')
    p.add_argument('--steps', default='eda,dedup,train-effnet,train-resnet,ensemble')
    p.add_argument('--sets', default='embedded,scale')
    p.add_argument('--reports', default=None, help='reports folder (default: a new temporary folder)')
    p.add_argument('--smoke', action='store_true', help='eda on the embedded set only (no build): checks the runner')
    args = p.parse_args()
    if args.smoke: args.sets, args.steps = 'embedded', 'eda'
    data = scale_set(args) if 'scale' in args.sets.split(',') else None
    if args.build_only: print(data); return
    reports = Path(args.reports or tempfile.mkdtemp(prefix='dogcls-scale-'))
    reports.mkdir(parents=True, exist_ok=True)
    papermill = [str(Path(sys.executable).parent/'papermill'), '--no-progress-bar', '--cwd', 'nbs']
    smoke = ['-p', 'folds', '2', '-p', 'epochs', '1', '-p', 'limit_batches', '20']
    env = {**os.environ, 'MPLBACKEND': 'Agg', 'PYTHONDONTWRITEBYTECODE': '1'}
    results = {}
    for name in args.sets.split(','):
        path = '' if name == 'embedded' else str(data)
        steps = {
            'eda': ['nbs/eda.ipynb', '-p', 'run_name', f'eda-{name}'],
            'dedup': ['nbs/dedup.ipynb', '-p', 'run_name', f'dedup-{name}'],
            'train-effnet': ['nbs/train.ipynb', '-p', 'arch', 'efficientnet_lite0', '-p', 'run_name', f'effnet-{name}', *smoke],
            'train-resnet': ['nbs/train.ipynb', '-p', 'arch', 'resnet', '-p', 'run_name', f'resnet-{name}', *smoke],
            'ensemble': ['nbs/ensemble.ipynb', '-p', 'run_name', f'ensemble-{name}', '-p', 'runs', f'["effnet-{name}", "resnet-{name}"]'],
        }
        for step in args.steps.split(','):
            nb, *params = steps[step]
            out = reports/f'{step}-{name}.ipynb'
            argv = [*papermill, nb, str(out), '-p', 'data', path, '-p', 'reports', str(reports), *params]
            seconds, peak, rc = run_step(argv, env)
            extra = ''
            if step.startswith('train') and rc == 0:
                run = reports/params[params.index('run_name') + 1]
                fit = sum(json.loads(d.read_text()).get('fit_seconds', 0) for d in run.glob('fold*/done.json'))
                extra = f'training (fit) {fit:6.1f} s, everything else {seconds - fit:6.1f} s'
                results[(step, name, 'rest')] = seconds - fit
            if step == 'ensemble' and rc == 0:
                size = (reports/f'ensemble-{name}'/'report.html').stat().st_size
                extra = f'report.html {size / 2**20:.1f} MiB'
            results[(step, name)] = (seconds, peak)
            print(f'{name:8s} {step:13s} {"FAILED " if rc else ""}{seconds:7.1f} s  peak RSS {peak:5.2f} GiB  {extra}', flush=True)
    if 'embedded' in args.sets and 'scale' in args.sets:
        print('\nstep            embedded            scale               growth (time, images x14)')
        for step in args.steps.split(','):
            if (step, 'embedded') in results and (step, 'scale') in results:
                (a, ma), (b, mb) = results[(step, 'embedded')], results[(step, 'scale')]
                print(f'{step:13s} {a:7.1f} s {ma:5.2f} GiB  {b:7.1f} s {mb:5.2f} GiB   {b / a:5.1f}x')
    pages = [p for name in args.sets.split(',') for p in sorted(reports.glob(f'*-{name}/report.html'))]
    for page, seconds in open_in_chromium(pages).items():
        print(f'{page.parent.name:18s} report.html {page.stat().st_size / 2**20:5.2f} MiB, loaded in headless Chromium in {seconds:.2f} s')
    if args.smoke and not args.reports: shutil.rmtree(reports) # a check, not a result: nothing left behind
    else: print(f'reports: {reports}')


if __name__ == '__main__':
    main()
