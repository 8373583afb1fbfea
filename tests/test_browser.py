"""Headless Chromium opens the reports index and a report: every image loads, no JavaScript error, the index sorts.
Needs Debian's chromium and chromium-driver (`make browser`); `make test` sets DOGCLS_REQUIRE_BROWSER=1 so that a
missing browser fails instead of skipping. Screenshots are kept in test-artifacts/."""
import os, shutil

import papermill as pm, pytest

from conftest import ROOT, clipart_slice
from dogcls.report import Report, finish_run

CHROMIUM, DRIVER = shutil.which('chromium'), shutil.which('chromedriver')
ARTIFACTS = ROOT/'test-artifacts'
if not (CHROMIUM and DRIVER):
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
    yield driver
    driver.quit()


def page_is_healthy(driver, name: str):
    "Every image decoded, no JavaScript error or failed load in the console; keep a screenshot."
    images = driver.execute_script('return Array.from(document.images).map(i => [i.complete, i.naturalWidth])')
    assert all(done and width > 0 for done, width in images), images
    errors = [e for e in driver.get_log('browser') if e['level'] == 'SEVERE']
    assert errors == [], errors
    ARTIFACTS.mkdir(exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS/f'{name}.png'))
    return len(images)


def test_index_and_report_in_chromium(tmp_path, browser):
    reports = tmp_path/'reports'
    root = clipart_slice(tmp_path/'data', 3)
    pm.execute_notebook(str(ROOT/'nbs'/'eda.ipynb'), str(tmp_path/'eda.ipynb'), kernel_name='python3', progress_bar=False,
                        parameters=dict(data=str(root), reports=str(reports), run_name='eda-slice', samples=3))
    for name, acc in [('model-b', 0.42), ('model-a', 0.61), ('model-c', 0.55)]:
        (reports/name).mkdir()
        finish_run(Report(name), reports/name, dict(kind='train', arch=name, oof_accuracy=acc, test_accuracy=acc - 0.05,
                                                    seconds=10.0, date='2026-11-27T12:00:00', config=dict(epochs=2, folds=3)))
    browser.get((reports/'index.html').as_uri())
    page_is_healthy(browser, 'index')
    rows = lambda: [r.text.split(' ')[0] for r in browser.find_elements('css selector', 'tbody tr')]
    assert set(rows()) == {'eda-slice', 'model-a', 'model-b', 'model-c'}
    header = browser.find_elements('css selector', 'th')[4] # out-of-fold accuracy
    header.click()
    assert rows() == ['model-b', 'model-c', 'model-a', 'eda-slice'] # ascending; the EDA run has no accuracy: last
    header.click()
    assert rows() == ['model-a', 'model-c', 'model-b', 'eda-slice'] # descending
    browser.find_element('link text', 'eda-slice').click()
    assert 'EDA: eda-slice' in browser.title
    assert page_is_healthy(browser, 'eda-report') >= 5
