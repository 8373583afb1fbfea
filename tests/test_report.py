"The HTML report mechanism and the EDA notebook, run through papermill on a tiny slice of the embedded data."
import html
import json
import re

import pandas as pd
import pytest
from conftest import clipart_slice, run_notebook

from dogcls.report import Report

EVIL = '<img src=x onerror=alert(1)>&"'


def test_report_escapes_and_embeds(tmp_path):
    r = Report(EVIL, EVIL)
    r.heading(EVIL); r.text(EVIL); r.metrics({EVIL: EVIL}); r.table(pd.DataFrame({EVIL: [EVIL]}), EVIL)
    page = r.save(tmp_path).read_text()
    assert EVIL not in page and '<img src=x' not in page and html.escape(EVIL) in page

def test_table_caption_counts_rows_left_out():
    r = Report('t'); r.table(pd.DataFrame({'x': range(30)}), 'numbers', max_rows=10)
    assert '(20 more rows not shown)' in r.html()


@pytest.fixture
def tiny_slice(tmp_path):
    "Three classes of the embedded set, one renamed to a hostile name, plus one bad file."
    evil = 'evil<b>&"class'
    root = clipart_slice(tmp_path/'slice', 3, evil)
    train = pd.read_csv(root/'train.csv')
    other = sorted(set(train.class_name) - {evil})[0]
    (root/'train'/other/'broken.png').write_bytes(b'\x89PNG\r\n')
    with open(root/'train.csv', 'a') as f: f.write(f'{other},train/{other}/broken.png,{train[train.class_name == other].target.iloc[0]}\n')
    return root, evil


def test_eda_notebook_writes_self_contained_report(tmp_path, tiny_slice):
    root, evil = tiny_slice
    run_notebook('eda.ipynb', tmp_path/'eda-out.ipynb', cwd=str(tmp_path), data=str(root), run_name='eda-test', reports=str(tmp_path/'reports'), samples=3)
    out = tmp_path/'reports'/'eda-test'
    page = (out/'report.html').read_text()
    images = re.findall(r'<img [^>]*src="([^"]*)"', page)
    assert len(images) >= 2 + 3 # class counts, sizes, and a sample of 3
    assert all(src.startswith('data:image/png;base64,') for src in images)
    assert evil not in page and html.escape(evil) in page
    assert 'broken.png' in page and 'not an image' in page # the data-quality report lists the bad file
    metrics = json.loads((out/'metrics.json').read_text())
    assert metrics['classes'] == 3 and metrics['files_skipped'] == 1
    manifest = pd.read_csv(out/'manifest.csv')
    assert set(manifest.split) == {'train', 'test'} and 'broken.png' not in ' '.join(manifest.image_path)
