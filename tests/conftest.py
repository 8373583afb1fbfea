"Fixtures: tiny data sets written into pytest's tmp_path; nothing is downloaded. Headless Chromium for the browser tests."
import hashlib
import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
CLIPART = ROOT/'data'/'clipart'

# The test files that take longest, longest first (`pytest --durations=0`, summed per file). `make pytest` runs each file
# on one worker (pytest-xdist --dist loadfile) in collection order (--no-loadscope-reorder): longest first, no worker
# starts a long file while the other is about to finish. A file not named runs after these.
SLOWEST_FIRST = ['test_docs.py', 'test_resume.py', 'test_competition.py', 'test_clean.py', 'test_train.py', 'test_lab.py',
                 'test_dedup.py', 'test_distributed.py', 'test_ensemble.py', 'test_augment.py', 'test_track.py']


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank))) # stable: a file's tests keep their order


def run_notebook(notebook: str, out: Path, cwd: Path | None = None, prepare_only: bool = False, **parameters):
    """An experiment notebook of nbs/ through papermill, as a user runs it, with `parameters`: executed in `cwd` (default:
    nbs/, as `make demo` runs it), or only written with its parameters (`prepare_only`, for a person to run)."""
    import papermill as pm
    pm.execute_notebook(str(ROOT/'nbs'/notebook), str(out), parameters=parameters, progress_bar=False, prepare_only=prepare_only,
                        **({} if prepare_only else dict(kernel_name='python3', cwd=str(cwd or ROOT/'nbs'))))


def save(im: Image.Image, path: Path, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, **kw)
    return path


def tree_state(folder: Path) -> dict:
    "Every file under `folder` with its size, modification time and content hash: proof that nothing changed."
    return {p.relative_to(folder).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns, hashlib.sha1(p.read_bytes()).hexdigest())
            for p in sorted(folder.rglob('*')) if p.is_file()}


def reported(problems):
    "The rows of a problems table that report a problem (not the detected path conventions)."
    return problems[problems.action != 'detected']


def write_competition(root: Path, classes=('a', 'b'), per_class=6, extra_train_rows=(), test_files=('x0.png',)) -> Path:
    "A competition-layout data set: train/<class>/<class><i>.png, train.csv, test/*.png, test.csv."
    rows = []
    for t, c in enumerate(classes):
        for i in range(per_class):
            save(Image.new('RGB', (16, 12), (40 * i % 256, 90 * t % 256, 7)), root/'train'/c/f'{c}{i}.png')
            rows.append(f'{c},train/{c}/{c}{i}.png,{t}')
    for name in test_files: save(Image.new('RGB', (16, 12), (1, 2, 3)), root/'test'/name)
    (root/'train.csv').write_text('class_name,image_path,target\n' + '\n'.join(rows + list(extra_train_rows)) + '\n')
    (root/'test.csv').write_text('image_path\n' + ''.join(f'test/{n}\n' for n in test_files))
    return root


@pytest.fixture
def competition(tmp_path):
    return write_competition(tmp_path/'data')


def clipart_slice(root: Path, n_classes=3, evil='evil<b>&"class') -> Path:
    "The first `n_classes` classes of the embedded set in the competition layout (`dogcls.clipart.clipart_slice`), the first class renamed to `evil`."
    import pandas as pd

    from dogcls.clipart import clipart_slice as first_classes
    first_classes(root, n_classes, CLIPART)
    if evil:
        train = pd.read_csv(root/'train.csv')
        first = sorted(train.class_name.unique())[0]
        (root/'train'/first).rename(root/'train'/evil)
        renamed = train.class_name == first
        train.loc[renamed, 'image_path'] = 'train/' + evil + '/' + train.image_path[renamed].str.split('/').str[-1]
        train.loc[renamed, 'class_name'] = evil
        train.to_csv(root/'train.csv', index=False)
    return root


def write_competition_as_shipped(root: Path, classes=('n01443537', 'n01484850'), per_class=6, test_files=6) -> Path:
    """The reference competition's own layout: train/<wnid>/sketch_N.JPEG with train.csv paths relative to train/,
    test/N.JPEG with test.csv (and test_labels.csv) paths relative to test/."""
    rows, labels = [], []
    for t, c in enumerate(classes):
        for i in range(per_class):
            save(Image.new('RGB', (20, 16), (30 * i % 256, 120 * t % 256, 9)), root/'train'/c/f'sketch_{i}.JPEG', format='JPEG')
            rows.append(f'{c},{c}/sketch_{i}.JPEG,{t}')
    for i in range(test_files):
        save(Image.new('RGB', (20, 16), (30 * i % 256, 120 * (i % len(classes)) % 256, 9)), root/'test'/f'{i}.JPEG', format='JPEG')
        labels.append(f'{i}.JPEG,{i % len(classes)}')
    (root/'train.csv').write_text('class_name,image_path,target\n' + '\n'.join(rows) + '\n')
    (root/'test.csv').write_text('image_path\n' + ''.join(f'{i}.JPEG\n' for i in range(test_files)))
    (root/'test_labels.csv').write_text('image_path,target\n' + '\n'.join(labels) + '\n')
    return root


def as_shipped(root: Path) -> Path:
    "Rewrite a root-relative competition layout (as `clipart_slice` makes) the competition's way: train.csv relative to train/, test.csv and test_labels.csv relative to test/."
    import pandas as pd
    for name, folder in (('train.csv', 'train/'), ('test.csv', 'test/'), ('test_labels.csv', 'test/')):
        table = pd.read_csv(root/name, dtype=str, keep_default_na=False)
        assert table.image_path.str.startswith(folder).all()
        table['image_path'] = table.image_path.str.slice(len(folder))
        table.to_csv(root/name, index=False)
    return root


# ---------------------------------------------------------------- headless Chromium
CHROMIUM, DRIVER = shutil.which('chromium'), shutil.which('chromedriver')
ARTIFACTS = ROOT/'test-artifacts'


def require_browser():
    """Skip the calling test module when Debian's chromium and chromium-driver are missing (`make browser`); `make test`
    sets DOGCLS_REQUIRE_BROWSER=1 so that a missing browser fails instead of skipping."""
    if CHROMIUM and DRIVER: return
    if os.environ.get('DOGCLS_REQUIRE_BROWSER'): raise RuntimeError('chromium and chromedriver are required: run `make browser`')
    pytest.skip('chromium/chromedriver not installed (make browser)', allow_module_level=True)


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ('--headless=new', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
                '--disable-sync', '--no-first-run', '--disable-quic', '--window-size=1300,1800', f'--user-data-dir={tmp_path/"chrome"}'):
        options.add_argument(arg)
    options.set_capability('goog:loggingPrefs', {'browser': 'ALL'})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def screenshot(driver, name: str):
    ARTIFACTS.mkdir(exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS/f'{name}.png'))


def page_is_healthy(driver, name: str):
    "Every image decoded, no JavaScript error or failed load in the console; keep a screenshot."
    images = driver.execute_script('return Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.src.slice(0, 80)])')
    assert all(done and width > 0 for done, width, _ in images), images
    errors = [e for e in driver.get_log('browser') if e['level'] == 'SEVERE']
    assert errors == [], errors
    screenshot(driver, name)
    return len(images)
