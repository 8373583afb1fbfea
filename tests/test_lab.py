"""JupyterLab driven in headless Chromium, as a user meets it: a server on a free loopback port with a random token, the
dedup and clean notebooks (parameterized on tiny data) run through the UI on the project's `dogcls` kernel, their figures
and reviewer panels rendered, the panel's controls clicked and saved, and the edit kept by a re-run. Every wait is
bounded: a hang or a dead kernel is a failure with a screenshot in test-artifacts/, and the server and its kernels are
shut down at the end whatever happened, with no process left behind. JupyterLab's own UI tests (Galata on Playwright)
wait the same way: on the kernel's state and the cells' prompts, never on a fixed sleep."""
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import psutil
import pytest
from conftest import ARTIFACTS, clipart_slice, require_browser, run_notebook, screenshot
from PIL import ImageOps

require_browser()
KERNEL = 'dogcls'


class KernelDied(AssertionError):
    "The notebook's kernel process ended while cells were running."


def _free_port()->int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


class Lab:
    "A JupyterLab server for one test: loopback, free port, random token, settings of its own; `close` leaves no process."
    def __init__(self, root: Path, timeout=90):
        self.root, self.token, self.port = root, secrets.token_hex(16), _free_port()
        self.url = f'http://127.0.0.1:{self.port}'
        settings = root/'.lab-settings'
        for name, values in {'@jupyterlab/notebook-extension/tracker': {'windowingMode': 'none'}, # every cell in the DOM
                             '@jupyterlab/apputils-extension/notification': {'fetchNews': 'false', 'checkForUpdates': False}}.items():
            (settings/name).parent.mkdir(parents=True, exist_ok=True)
            (settings/f'{name}.jupyterlab-settings').write_text(json.dumps(values))
        env = dict(os.environ, JUPYTERLAB_SETTINGS_DIR=str(settings), JUPYTERLAB_WORKSPACES_DIR=str(root/'.lab-workspaces'),
                   JUPYTER_CONFIG_DIR=str(root/'.jupyter'), JUPYTER_RUNTIME_DIR=str(root/'.jupyter-runtime'))
        env.pop('MPLBACKEND', None) # as `make lab` does: the kernel's inline backend shows the figures
        self.log = open(root/'jupyterlab.log', 'w')
        self.server = subprocess.Popen([sys.executable, '-m', 'jupyter', 'lab', '--no-browser', '--ip=127.0.0.1', f'--port={self.port}',
                                        '--ServerApp.port_retries=0', f'--IdentityProvider.token={self.token}', f'--ServerApp.root_dir={root}',
                                        '--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate']
                                       + (['--allow-root'] if os.geteuid() == 0 else []),
                                       cwd=root, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self.process = psutil.Process(self.server.pid)
        deadline = time.time() + timeout
        while True:
            if self.server.poll() is not None: raise AssertionError(f'JupyterLab exited at start:\n{self.log_tail()}')
            try: self.api('/api/status'); break
            except OSError:
                if time.time() > deadline: raise AssertionError(f'JupyterLab did not answer in {timeout} s:\n{self.log_tail()}') from None
                time.sleep(0.5)

    def log_tail(self, n=30)->str:
        self.log.flush()
        return '\n'.join((self.root/'jupyterlab.log').read_text(errors='replace').splitlines()[-n:])

    def api(self, path: str, method='GET'):
        request = urllib.request.Request(self.url + path, method=method, headers={'Authorization': f'token {self.token}'})
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body else None

    def kernel(self, notebook: str)->tuple[dict, psutil.Process|None]:
        "The kernel of the session that has `notebook` open, and its process (None while it has none)."
        session = next((s for s in self.api('/api/sessions') if s['path'] == notebook), None)
        if not session: return {}, None
        kernel = session['kernel']
        process = next((p for p in self.process.children(recursive=True)
                        if any(f'kernel-{kernel["id"]}.json' in a for a in _cmdline(p))), None)
        return kernel, process

    def close(self)->list[str]:
        "Shut the server and its kernels down (politely, then by force); returns the processes still alive (none, we check)."
        family = [self.process] + _children(self.process)
        try: self.api('/api/shutdown', method='POST')
        except OSError: pass
        try: self.server.wait(15)
        except subprocess.TimeoutExpired: pass
        family += [p for p in _children(self.process) if p not in family]
        for p in family:
            try: p.kill()
            except psutil.NoSuchProcess: pass
        gone, alive = psutil.wait_procs(family, timeout=15)
        self.log.close()
        return [f'{p.pid} {" ".join(_cmdline(p))}' for p in alive]


def _children(process):
    try: return process.children(recursive=True)
    except psutil.NoSuchProcess: return []


def _cmdline(process):
    try: return process.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess): return []


@pytest.fixture
def lab_root(tmp_path):
    from jupyter_client.kernelspec import KernelSpecManager
    assert KERNEL in KernelSpecManager().find_kernel_specs(), f'the kernel "{KERNEL}" is not installed: run `make install`'
    (tmp_path/'lab').mkdir()
    return tmp_path/'lab' # JupyterLab's root; the browser keeps its profile beside it


@pytest.fixture
def lab(lab_root):
    server = Lab(lab_root)
    yield server
    left = server.close()
    assert left == [], f'processes left behind: {left}'


# ---------------------------------------------------------------- driving the UI
def _menu(driver, menu: str, command: str):
    "Click a menu bar entry, then the item that runs `command` (JupyterLab's command ids are stable, labels are not)."
    from selenium.webdriver.common.by import By
    items = [e for e in driver.find_elements(By.CSS_SELECTOR, '.lm-MenuBar-item') if e.text.strip() == menu]
    assert items, f'no {menu} menu'
    items[0].click()
    _until(driver, lambda: driver.find_elements(By.CSS_SELECTOR, f'.lm-Menu-item[data-command="{command}"]'), 10, f'menu item {command}')[0].click()


def _until(driver, condition, timeout, what, name='lab-timeout'):
    "Poll `condition` until it is truthy; past `timeout` seconds fail with what we waited for and a screenshot."
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value: return value
        time.sleep(0.3)
    screenshot(driver, name)
    pytest.fail(f'waited {timeout} s for {what}; screenshot test-artifacts/{name}.png')


def _prompts(driver)->list[str]:
    return driver.execute_script("return Array.from(document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell .jp-InputPrompt'))"
                                 ".map(e => e.textContent.trim())")


def open_notebook(driver, lab: Lab, notebook: str, timeout=120):
    "Open a notebook in JupyterLab and wait until its kernel is idle; returns the kernel's process."
    from selenium.webdriver.common.by import By
    driver.get(f'{lab.url}/lab/tree/{notebook}?token={lab.token}')
    _until(driver, lambda: driver.find_elements(By.CSS_SELECTOR, '.jp-NotebookPanel .jp-CodeCell'), timeout, f'{notebook} to open')
    def ready():
        kernel, process = lab.kernel(notebook)
        return process if kernel.get('execution_state') == 'idle' and process else None
    process = _until(driver, ready, timeout, f'the kernel of {notebook} to be idle')
    assert lab.kernel(notebook)[0]['name'] == KERNEL
    return process


def run_all(driver, lab: Lab, notebook: str, kernel_process, timeout: float):
    """Run every cell through the Run menu and wait until the kernel is idle and no cell is running or queued. A kernel
    process that ends is a `KernelDied` at once; a run past `timeout` a failure; both with a screenshot."""
    _menu(driver, 'Run', 'runmenu:run-all')
    started, deadline, idle_since = time.time(), time.time() + timeout, None
    while True:
        name = f'lab-{Path(notebook).stem}'
        if not kernel_process.is_running() or kernel_process.status() == psutil.STATUS_ZOMBIE:
            screenshot(driver, f'{name}-kernel-died')
            raise KernelDied(f'the kernel of {notebook} (pid {kernel_process.pid}) died after {time.time() - started:.0f} s; '
                             f'prompts {_prompts(driver)}; screenshot test-artifacts/{name}-kernel-died.png')
        prompts = _prompts(driver)
        state = lab.kernel(notebook)[0].get('execution_state')
        settled = state == 'idle' and not any('*' in p for p in prompts)
        if settled and all(p.strip('[]: ').isdigit() for p in prompts): return prompts
        idle_since = (idle_since or time.time()) if settled else None
        if idle_since and time.time() - idle_since > 5: return prompts # stopped at an error: the caller reads the saved outputs
        if time.time() > deadline:
            screenshot(driver, f'{name}-timeout')
            pytest.fail(f'{notebook} still running after {timeout} s (kernel {state}, prompts {prompts}); '
                        f'screenshot test-artifacts/{name}-timeout.png')
        time.sleep(0.5)


def save_and_read(driver, lab: Lab, notebook: str)->dict:
    "Save through the File menu and read the notebook from disk."
    path = lab.root/notebook
    before = path.stat().st_mtime_ns
    _menu(driver, 'File', 'docmanager:save')
    _until(driver, lambda: path.stat().st_mtime_ns != before, 30, f'{notebook} to be saved')
    return json.loads(path.read_text())


def assert_ran_cleanly(nb: dict, notebook: str):
    code = [c for c in nb['cells'] if c['cell_type'] == 'code']
    errors = [(i, o.get('ename'), o.get('evalue')) for i, c in enumerate(code) for o in c['outputs'] if o['output_type'] == 'error']
    assert errors == [], f'{notebook}: error outputs {errors}'
    assert all(c['execution_count'] for c in code), f'{notebook}: cells that did not run: {[c["source"][:60] for c in code if not c["execution_count"]]}'


def reviewer_tiles(driver)->list:
    "The reviewer panel's tiles as (image_path, active choice, the toggle element)."
    from selenium.webdriver.common.by import By
    tiles = []
    for toggle in driver.find_elements(By.CSS_SELECTOR, '.jp-OutputArea .widget-toggle-buttons'):
        label = driver.execute_script("return arguments[0].closest('.widget-vbox').querySelector('.widget-html-content').innerText", toggle)
        active = [b.text for b in toggle.find_elements(By.CSS_SELECTOR, 'button.mod-active')]
        tiles.append((label.split('\n')[0].strip(), active[0] if active else None, toggle))
    return tiles


def click_save(driver):
    from selenium.webdriver.common.by import By
    [b for b in driver.find_elements(By.CSS_SELECTOR, '.jp-OutputArea button.widget-button') if b.text.strip() == 'save'][0].click()
    _until(driver, lambda: any('Saved' in e.text for e in driver.find_elements(By.CSS_SELECTOR, '.jp-OutputArea .widget-html-content')),
           30, 'the reviewer to say Saved')


def assert_widgets_rendered(driver):
    from selenium.webdriver.common.by import By
    assert driver.find_elements(By.CSS_SELECTOR, '.jp-OutputArea .jupyter-widgets.widget-vbox'), 'no widget rendered'
    texts = ' '.join(e.text for e in driver.find_elements(By.CSS_SELECTOR, '.jp-OutputArea-output'))
    assert 'VBox(' not in texts and 'DuplicateReviewer object' not in texts, 'the panel came out as a text repr'
    images = driver.execute_script("return Array.from(document.querySelectorAll('.jp-OutputArea .jupyter-widgets img')).map(i => i.naturalWidth)")
    assert images and all(w > 0 for w in images), f'reviewer thumbnails not decoded: {images}'


def panel_screenshot(driver, name: str):
    from selenium.webdriver.common.by import By
    panel = driver.find_elements(By.CSS_SELECTOR, '.jp-OutputArea .jupyter-widgets.widget-vbox')[0]
    driver.execute_script('arguments[0].scrollIntoView()', panel)
    ARTIFACTS.mkdir(exist_ok=True)
    panel.screenshot(str(ARTIFACTS/f'{name}.png'))


def prepare(notebook: str, root: Path, **parameters)->str:
    "The experiment notebook with its parameters injected, as papermill would, without running it (the UI runs it)."
    run_notebook(notebook, root/notebook, prepare_only=True, **parameters)
    return notebook


# ---------------------------------------------------------------- the tests
def _dedup_data(root: Path)->Path:
    "Three embedded classes (one with a hostile name), a copy of one drawing filed in another class and a mirrored copy in its own."
    data = clipart_slice(root, 3)
    train = pd.read_csv(data/'train.csv')
    first, other = train.class_name.iloc[0], sorted(set(train.class_name) - {train.class_name.iloc[0]})[0]
    source = train[train.class_name == first].image_path.iloc[0]
    shutil.copy(data/source, data/'train'/other/'filed_twice.png')
    mirror = train[train.class_name == other].image_path.iloc[1]
    from PIL import Image
    ImageOps.mirror(Image.open(data/mirror).convert('RGB')).save(data/'train'/other/'mirrored.png')
    target = train[train.class_name == other].target.iloc[0]
    with open(data/'train.csv', 'a') as f: f.write(f'{other},train/{other}/filed_twice.png,{target}\n{other},train/{other}/mirrored.png,{target}\n')
    return data


def test_dedup_reviewer_in_jupyterlab(lab, browser):
    root = lab.root
    data = _dedup_data(root/'data')
    reports = root/'reports'
    nb = prepare('dedup.ipynb', root, data=str(data), reports=str(reports), run_name='dedup-lab', max_clusters=5)
    started = time.time()
    kernel = open_notebook(browser, lab, nb)
    run_all(browser, lab, nb, kernel, timeout=300)
    assert_ran_cleanly(save_and_read(browser, lab, nb), nb)
    from selenium.webdriver.common.by import By
    figures = browser.execute_script("return Array.from(document.querySelectorAll('.jp-RenderedImage img')).map(i => i.naturalWidth)")
    assert figures and all(w > 0 for w in figures), f'figures not rendered as images: {figures}'
    assert_widgets_rendered(browser)
    decisions_path = reports/'dedup-lab'/'decisions.csv'
    before = pd.read_csv(decisions_path, keep_default_na=False)
    assert before.review.any() and (~before.review).any() # a label conflict and a within-class cluster
    image, active, toggle = reviewer_tiles(browser)[0]
    choice = 'keep' if active == 'drop' else 'drop'
    [b for b in toggle.find_elements(By.CSS_SELECTOR, 'button') if b.text == choice][0].click()
    click_save(browser)
    panel_screenshot(browser, 'lab-dedup-reviewer')
    after = pd.read_csv(decisions_path, keep_default_na=False)
    changed = after[(after.action != before.action)]
    assert changed.image_path.tolist() == [image] and changed.action.tolist() == [choice] # that row, and only it
    assert after.drop(columns='action').equals(before.drop(columns='action'))
    # a re-run of the notebook (in JupyterLab, as the user would) keeps and applies the edit
    run_all(browser, lab, nb, kernel, timeout=300)
    assert_ran_cleanly(save_and_read(browser, lab, nb), nb)
    kept = pd.read_csv(decisions_path, keep_default_na=False).set_index('image_path')
    assert kept.loc[image, 'action'] == choice
    assert (image in set(pd.read_csv(reports/'dedup-lab'/'manifest_clean.csv').image_path)) == (choice == 'keep')
    assert dict((i, a) for i, a, _ in reviewer_tiles(browser))[image] == choice # the panel shows the saved choice
    print(f'dedup notebook in JupyterLab: {time.time() - started:.1f} s (open, run, review, save, re-run)')


def test_label_issue_reviewer_in_jupyterlab(lab, browser):
    from selenium.webdriver.common.by import By

    from dogcls.data import load_data
    from dogcls.train import train_kfold
    root = lab.root
    data = clipart_slice(root/'data', 3)
    manifest, _ = load_data(data)
    train_kfold(manifest, root/'reports'/'base', arch='resnet', size='cpu', img_size=32, epochs=1, folds=2, batch_size=8, limit_batches=2,
                log=lambda line: None)
    nb = prepare('clean.ipynb', root, runs='["base"]', data=str(data), reports=str(root/'reports'), run_name='clean-lab', backend='pixels', k=3)
    kernel = open_notebook(browser, lab, nb)
    run_all(browser, lab, nb, kernel, timeout=300)
    assert_ran_cleanly(save_and_read(browser, lab, nb), nb)
    assert_widgets_rendered(browser)
    path = root/'reports'/'clean-lab'/'decisions.csv'
    before = pd.read_csv(path, keep_default_na=False)
    tiles = reviewer_tiles(browser)
    assert len(tiles) == min(12, len(before)) # a page of 12 label issues
    image, active, toggle = tiles[0]
    choice = 'keep' if active != 'keep' else 'drop'
    [b for b in toggle.find_elements(By.CSS_SELECTOR, 'button') if b.text == choice][0].click()
    click_save(browser)
    panel_screenshot(browser, 'lab-clean-reviewer')
    after = pd.read_csv(path, keep_default_na=False)
    changed = after[after.action != before.action]
    assert changed.image_path.tolist() == [image] and changed.action.tolist() == [choice]


def test_a_dead_kernel_is_a_clear_failure(lab, browser):
    import nbformat
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell('import os\nos.getpid()'), nbformat.v4.new_code_cell('import time\ntime.sleep(600)')]
    notebook.metadata['kernelspec'] = dict(name=KERNEL, display_name=KERNEL, language='python')
    nbformat.write(notebook, lab.root/'sleeps.ipynb')
    kernel = open_notebook(browser, lab, 'sleeps.ipynb')
    def kill_when_busy():
        deadline = time.time() + 60
        while time.time() < deadline and lab.kernel('sleeps.ipynb')[0].get('execution_state') != 'busy': time.sleep(0.2)
        os.kill(kernel.pid, signal.SIGKILL)
    import threading
    threading.Timer(1.0, kill_when_busy).start()
    # a death is a KernelDied as soon as it is seen; at the timeout it would be a failure of its own (pytest.fail)
    with pytest.raises(KernelDied, match=r'the kernel of sleeps.ipynb \(pid \d+\) died'):
        run_all(browser, lab, 'sleeps.ipynb', kernel, timeout=120)
    assert (ARTIFACTS/'lab-sleeps-kernel-died.png').is_file()
