"""Headless Chromium opens the reports index and a report: every image loads, no JavaScript error, the index sorts.
The browser comes from conftest (`browser`); screenshots are kept in test-artifacts/."""

from conftest import clipart_slice, page_is_healthy, require_browser, run_notebook

from dogcls.report import Report
from dogcls.run_index import finish_run

require_browser()


def test_index_and_report_in_chromium(tmp_path, browser):
    reports = tmp_path/'reports'
    root = clipart_slice(tmp_path/'data', 3)
    run_notebook('eda.ipynb', tmp_path/'eda.ipynb', data=str(root), reports=str(reports), run_name='eda-slice', samples=3)
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
