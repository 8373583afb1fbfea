"""The documentation site and README.md built from the notebooks (tools/docs.py): every notebook a page, nbdev's API
links resolve to their entries, the experiment pages show their parameters, the crawler finds no broken link, image or
anchor, search finds an API name, and bad notebooks stop the build with their name and cell. The site is opened in
headless Chromium over HTTP (the search page reads other pages, which browsers refuse on file://)."""
import functools
import html
import http.server
import importlib
import json
import re
import sys
import threading
import time
from pathlib import Path

import nbformat
import papermill as pm
import pytest
from conftest import ROOT, page_is_healthy, require_browser, screenshot

sys.path.insert(0, str(ROOT/'tools'))
import docs  # noqa: E402 (tools/ is not a package)


@pytest.fixture(scope='module')
def site(tmp_path_factory):
    "The site of this checkout's notebooks, built once for the module into a temporary folder."
    work = tmp_path_factory.mktemp('docs')
    # one library notebook executed and one example run made (make docs executes them all; nbdev_test has already run
    # every cell of each library notebook, and the tests run every experiment notebook)
    figures = docs.build_site(work/'site', work/'work', execute={'01d_report'}, cache=work/'cache', examples={'eda'})
    return work/'site', figures


def _html(site, page): return (site/f'{page}.html').read_text(encoding='utf-8')


def test_every_notebook_is_a_page_in_nbdev_order(site):
    site, figures = site
    notebooks = docs.notebooks()
    assert figures['pages'] == len(notebooks) and len(notebooks) >= 20 and (figures['executed'], figures['cached']) == (1, 0)
    assert (figures['examples'], figures['examples_cached']) == (1, 0)
    for nb in notebooks: assert (site/f'{docs.page_name(nb)}.html').is_file(), nb
    assert docs.page_name(ROOT/'nbs'/'03_run.ipynb') == 'run' and docs.page_name(ROOT/'nbs'/'train.ipynb') == 'experiments/train'
    library = _html(site, 'library')
    order = [library.index(f'href="{docs.page_name(nb)}.html"') for nb in notebooks
             if nb.stem not in ('index', *docs.GUIDES) and not docs.is_experiment(nb)]
    assert 'reading_a_report' not in library[library.index('<article'):library.index('</article>')] # a guide, not a module:
    assert 'href="reading_a_report.html"' in _html(site, 'index') # in the top bar, before the library
    assert order == sorted(order) # the library section lists the modules in the notebooks' order


def test_an_executed_page_shows_its_tables_and_figures(site):
    from PIL import Image
    site, _ = site
    page = _html(site, 'report') # 01d_report: the cheapest library notebook with both (a few seconds)
    assert len(re.findall(r'<table[^>]*class="dataframe', page)) >= 1 # the per-class table
    figures = re.findall(r'<img [^>]*src="(_images/[^"]+\.png)"', page) # the learning curves, confusion matrices...
    assert len(figures) >= 5
    for f in figures:
        with Image.open(site/f) as im: im.load(); assert min(im.size) > 50 # each figure decodes
    assert 'class="cell_output' not in _html(site, 'run') # a page not executed shows no output


def test_api_entries_have_the_anchors_of_nbdev_links(site):
    site, _ = site
    from dogcls._modidx import d
    linked = 0
    for module in ('dogcls.run', 'dogcls.dedup.pipeline', 'dogcls.decisions', 'dogcls.config', 'dogcls.review', 'dogcls.train'):
        mod = importlib.import_module(module)
        for key, (link, _) in d['syms'][module].items(): # every public function and class has an entry where nbdev's links go
            if key[len(module) + 1:] not in mod.__all__: continue
            page, anchor = link.split('#')
            assert re.search(rf'id="{re.escape(anchor)}"', _html(site, page[:-5])), f'{key}: no #{anchor} on {page}'
            linked += 1
    assert linked > 30
    run = _html(site, 'run')
    assert 'id="run.top_losses"' in run and '>Run.top_losses<' in run
    assert len(re.findall(r'<h3>Run\.top_losses<', run)) == 1 # nbdev's own entry and the notebook's show_doc: shown once
    assert 'href="run.html#run.load"' in run # a backtick name in the prose links to its entry
    assert 'dogcls.github.io' not in run # nbdev's absolute links made relative: the site works where it is opened


def test_experiment_pages_show_their_parameters_and_command(site):
    site, _ = site
    page = _html(site, 'experiments/train')
    assert 'papermill nbs/train.ipynb' in page
    for p in pm.inspect_notebook(str(ROOT/'nbs'/'train.ipynb')).values():
        row = re.search(rf'<code[^>]*><span class="pre">{re.escape(p["name"])}</span></code></p>\s*</td>\s*<td[^>]*>(.*?)</tr>', page, re.S)
        assert row, p['name']
        assert p['help'].split(';')[0].replace('<', '&lt;')[:25] in row.group(1).replace('’', "'"), (p['name'], row.group(1)[:300])
    assert 'class="cell tag_parameters' in page # and the parameters cell itself, with its comments
    assert 'An example run' not in page # no example run of train in this site (make docs makes them all)


def test_an_experiment_page_ends_with_its_example_report(site):
    site, _ = site
    page = _html(site, 'experiments/eda')
    example = page[page.index('id="an-example-run"'):page.index('</article>')]
    assert 'papermill nbs/eda.ipynb reports/eda/eda.ipynb' in re.sub(r'<[^>]+>', '', example) # its command (highlighted)
    assert 'href="examples/eda.html"' in example
    report = (site/'experiments'/'examples'/'eda.html').read_text(encoding='utf-8') # the run's own self-contained file
    sections = docs.report_sections(report)
    folder = re.search(r'<td>data folder</td>\s*<td>([^<]+)</td>', report).group(1)
    assert (Path(html.unescape(folder))/'train.csv').is_file() # the folder the report names is where its run read the data
    assert [h for h, _ in sections][:3] == ['Warnings', 'Overview', 'Images per class']
    for heading, _ in sections: # every section under its heading, with its tables and figures as the report has them
        assert re.search(rf'<h3>{re.escape(html.escape(heading, quote=False))}<', example), heading
    assert example.count('class="dogcls-report"') == len(sections)
    assert example.count('<img') == sum(body.count('<img') for _, body in sections) >= 2 # its figures and thumbnails
    assert example.count('<table') == sum(body.count('<table') for _, body in sections) >= 2
    reading = _html(site, 'reading_a_report') # its runs were not made here: each section says where to see it
    assert reading.count('is shown here when the site is built with its example runs') == len(docs._PLACEHOLDER.findall(
        '\n'.join(''.join(c['source']) for c in json.loads((ROOT/'nbs'/'reading_a_report.ipynb').read_text())['cells'])))


def test_report_sections_in_a_page_are_styled_as_the_report_styles_them():
    from dogcls.report import REPORT_CSS
    css = docs.report_css()
    assert '.dogcls-report .warnings {' in css and '.dogcls-report th, .dogcls-report td {' in css
    assert css.count('{') == REPORT_CSS.count('{') - 4 + 1 # every rule but the page frame's 4, and the frame of the sections
    assert not re.search(r'(^|[\s,])(body|h1|h2)\b', css) # the docs page keeps the theme's


def test_a_guide_shows_report_sections_and_names_a_missing_one(tmp_path):
    from dogcls.report import Report
    report = Report('a run'); report.heading('Leakage'); report.text('Leak audit: 0 <validation> images.')
    report.save(tmp_path/'reports'/'lite0')
    nb = {'cells': [dict(cell_type='markdown', source='Before.\n\n<!-- report lite0: Leakage -->\nAfter.')]}
    cells = docs.fill_reports(nb, tmp_path/'reports', 'nbs/guide.ipynb')['cells']
    assert [c['cell_type'] for c in cells] == ['markdown', 'code', 'markdown']
    assert cells[0]['source'].strip() == 'Before.' and cells[2]['source'].strip() == 'After.'
    assert cells[1]['outputs'][0]['data']['text/html'] == '<div class="dogcls-report"><p>Leak audit: 0 &lt;validation&gt; images.</p></div>'
    bad = {'cells': [dict(cell_type='markdown', source='x'), dict(cell_type='markdown', source='<!-- report lite0: Leak -->')]}
    with pytest.raises(docs.DocsError, match=r'nbs/guide.ipynb, cell 1: .*no section "Leak" \(it has: Warnings; Leakage\)'):
        docs.fill_reports(bad, tmp_path/'reports', 'nbs/guide.ipynb')
    with pytest.raises(docs.DocsError, match=r'cell 0: no example run `nope`'):
        docs.fill_reports({'cells': [dict(cell_type='markdown', source='<!-- report nope: Leakage -->')]}, tmp_path/'reports', 'g')


def test_a_failing_example_run_names_its_notebook_run_and_cell(tmp_path):
    with pytest.raises(docs.DocsError) as e:
        docs.run_examples(tmp_path/'cache', [('eda', 'broken', dict(data=str(tmp_path/'no-such-folder')))], log=lambda *a: None)
    message = str(e.value)
    assert message.startswith("nbs/eda.ipynb (the docs' example run `broken`, cell [") and 'no-such-folder' in message, message
    assert not list((tmp_path/'cache').glob('examples-*')) # nothing kept: the next build runs it again


def test_home_page_and_readme(site):
    site, _ = site
    home = _html(site, 'index')
    assert 'make demo' in home and 'make test' in home and 'papermill nbs/train.ipynb out.ipynb -p arch swin' in home
    assert 'src="_images/dedup-clusters.png"' in home or 'src="images/dedup-clusters.png"' in home
    assert 'href="experiments/dedup.html"' in home and 'href="data.html"' in home # notebook links become page links
    readme = (ROOT/'README.md').read_text()
    assert docs.write_readme(check=True), 'README.md is not what nbs/index.ipynb gives: make readme'
    assert '](nbs/dedup.ipynb)' in readme and '](nbs/images/dedup-clusters.png)' in readme # links work from the root


def test_readme_check_fails_when_stale(tmp_path):
    stale = tmp_path/'README.md'
    stale.write_text(docs.readme_text() + 'a line added by hand\n')
    assert not docs.write_readme(check=True, path=stale)
    assert docs.write_readme(check=False, path=stale) and docs.write_readme(check=True, path=stale)


def test_crawler_finds_no_broken_link_and_catches_one(site, tmp_path):
    site, _ = site
    links = docs.check_links(site)
    assert links['broken'] == [] and links['duplicate_ids'] == []
    assert links['pages'] >= 25 and links['links'] > 1000
    # the crawler is not blind: a page with a missing file, a missing anchor and a duplicate id
    (tmp_path/'a.html').write_text('<p id="x"></p><p id="x"></p><a href="b.html#nowhere">b</a><img src="gone.png"><a href="a.html#x">x</a>')
    (tmp_path/'b.html').write_text('<h1 id="top">b</h1>')
    bad = docs.check_links(tmp_path)
    assert len(bad['broken']) == 2 and 'no anchor #nowhere' in bad['broken'][0] + bad['broken'][1] and bad['duplicate_ids']


# ---------------------------------------------------------------- Quarto options and bad notebooks
def _notebook(path: Path, *cells):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(c[3:]) if c.startswith('md:') else nbformat.v4.new_code_cell(c) for c in cells]
    nb.metadata['kernelspec'] = dict(name='dogcls', display_name='dogcls', language='python')
    nbformat.write(nb, path)
    return path


def test_quarto_options_become_myst_nb():
    code = lambda src, **kw: dict(cell_type='code', metadata={}, source=src, outputs=kw.get('outputs', []))
    nb = dict(cells=[dict(cell_type='raw', metadata={}, source='---\ntitle: A page\ndescription: what it is\n---\n'),
                     code('#| echo: false\nx = 1'), code('#| include: false\ny = 2'), code('#| output: false\nz = 3'),
                     code('#| output: asis\nshow', outputs=[dict(output_type='display_data', data={'text/markdown': '## Hi\n\n*there*'})])],
              metadata={})
    out, entries = docs.translate(nb, 'x.ipynb')
    kinds = [(c['cell_type'], c['metadata'].get('tags'), c['source']) for c in out['cells']]
    assert kinds == [('markdown', None, '# A page\n\nwhat it is'), ('code', ['remove-input'], 'x = 1'), ('code', ['remove-output'], 'z = 3'),
                     ('markdown', None, '## Hi\n\n*there*')]
    assert entries == {'hi'}


@pytest.mark.parametrize('option, message', [('#| echo false', 'unknown cell option `#| echo false` (did you mean `#| echo: false`?)'),
                                             ('#| output: [asis', 'is not valid YAML'),
                                             ('#| echo: maybe', 'echo takes true or false')])
def test_a_bad_cell_option_names_the_notebook_and_cell(tmp_path, option, message):
    nb = _notebook(tmp_path/'01_bad.ipynb', 'md:# Bad\n> a notebook with a typo', 'x = 1', f'{option}\ny = 2')
    with pytest.raises(docs.DocsError) as e: docs.process([nb], tmp_path/'out')
    assert f'{nb}, cell 2: ' in str(e.value) and message in str(e.value)


def test_show_doc_of_a_missing_name_names_the_notebook_and_cell(tmp_path):
    nb = _notebook(tmp_path/'01_gone.ipynb', 'md:# Gone\n> a notebook whose show_doc outlived its function',
                   '#| hide\nfrom nbdev.showdoc import show_doc', 'from dogcls.core import DataError', 'show_doc(renamed_function)')
    with pytest.raises(docs.DocsError) as e: docs.process([nb], tmp_path/'out')
    text = str(e.value)
    assert f'{nb}, cell 3 (`show_doc(renamed_function)`): NameError' in text and 'renamed_function' in text
    assert 'Traceback' not in text


def test_executed_notebooks_are_cached_hidden_cells_run_unseen_and_a_failing_example_names_its_cell(tmp_path):
    cache = tmp_path/'cache'
    nb = _notebook(tmp_path/'01_shown.ipynb', 'md:# Shown\n> outputs on the page', '#| hide\nimport math\nprint("set-up, hidden")',
                   'print("root", math.sqrt(16))')
    assert docs.process([nb], tmp_path/'out', execute=True, cache=cache) == dict(executed=1, cached=0)
    page = (tmp_path/'out'/nb.name).read_text()
    assert 'root 4.0' in page and 'set-up, hidden' not in page # the hidden cell ran, and is not on the page
    assert docs.process([nb], tmp_path/'out2', execute=True, cache=cache) == dict(executed=0, cached=1) # unchanged: cached
    _notebook(nb, 'md:# Shown\n> outputs on the page', '#| hide\nimport math', 'print("root", math.sqrt(25))')
    assert docs.process([nb], tmp_path/'out3', execute=True, cache=cache) == dict(executed=1, cached=0) # edited: run again
    assert 'root 5.0' in (tmp_path/'out3'/nb.name).read_text() and len(list(cache.glob('01_shown-*.ipynb'))) == 1
    bad = _notebook(tmp_path/'02_fails.ipynb', 'md:# Fails\n> an example that raises', '#| hide\nimport math', 'x = 1',
                    'y = math.sqrt(-1)', 'print("never")')
    with pytest.raises(docs.DocsError, match=r"execute=\['04_dedup'\]: no such notebook"): # a stale name is not a silent no-op
        docs.process([nb], tmp_path/'out5', execute={'04_dedup'}, cache=cache)
    with pytest.raises(docs.DocsError) as e: docs.process([nb, bad], tmp_path/'out4', execute=True, cache=cache)
    assert str(e.value).startswith(f'{bad}, cell 3 (`y = math.sqrt(-1)`): ValueError: math domain error')
    assert not list(cache.glob('02_fails-*')) # nothing of a failed run is kept


def test_a_sphinx_warning_fails_the_build_naming_the_notebook(tmp_path):
    nbs = tmp_path/'nbs'; nbs.mkdir()
    _notebook(nbs/'index.ipynb', 'md:# Home\n> the home page', 'md:![a figure that is not there](images/missing.png)')
    with pytest.raises(docs.DocsError) as e: # no example runs: the build fails in Sphinx, which is what is tested
        docs.build_site(tmp_path/'site', tmp_path/'work', nbs, cache=tmp_path/'cache', examples=False)
    assert 'index.ipynb' in str(e.value) and 'missing.png' in str(e.value)


# ---------------------------------------------------------------- in the browser
class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args): pass


@pytest.fixture
def served(site):
    "The site over HTTP on a free loopback port, for the test's duration."
    site, _ = site
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), functools.partial(_Quiet, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True); thread.start()
    yield f'http://127.0.0.1:{server.server_address[1]}'
    server.shutdown(); server.server_close()


def test_site_in_chromium(served, browser):
    require_browser()
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    browser.get(f'{served}/index.html')
    assert page_is_healthy(browser, 'docs-home') >= 1 # the report figure
    assert 'dogcls' in browser.title
    browser.get(f'{served}/report.html#plot-learning-curves')
    assert page_is_healthy(browser, 'docs-report-figures') >= 5 # the report notebook's figures, computed when the site was built
    browser.get(f'{served}/experiments/eda.html#an-example-run')
    assert page_is_healthy(browser, 'docs-experiment-report') >= 2 # the example report's figures and thumbnails decode
    assert browser.execute_script('return document.querySelectorAll(".dogcls-report img").length') >= 2
    browser.get(f'{served}/run.html#run.top_losses')
    page_is_healthy(browser, 'docs-run')
    assert browser.execute_script('return document.getElementById("run.top_losses").getBoundingClientRect().top') < 200 # landed on it
    browser.get(f'{served}/search.html?q=find_duplicates')
    results = WebDriverWait(browser, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, '#search-results ul.search li a'))
    hrefs = [a.get_attribute('href') for a in results]
    assert any(h.endswith('/dedup.html#find-duplicates') for h in hrefs), hrefs
    time.sleep(1) # the result summaries are fetched after the list
    page_is_healthy(browser, 'docs-search')
    entry = next(a for a in results if a.get_attribute('href').endswith('/dedup.html#find-duplicates'))
    entry.click()
    WebDriverWait(browser, 30).until(lambda d: d.current_url.endswith('#find-duplicates'))
    heading = browser.find_element(By.ID, 'find-duplicates').find_element(By.TAG_NAME, 'h3')
    assert heading.text.startswith('find_duplicates')
    screenshot(browser, 'docs-search-landed')


# ---------------------------------------------------------------- make lab
def test_notebooks_name_the_project_kernel():
    for nb in docs.notebooks():
        assert json.loads(nb.read_text())['metadata']['kernelspec']['name'] == 'dogcls', nb # make install registers it in .venv


def test_make_lab_takes_the_next_free_port_when_one_is_taken():
    import importlib.util
    import socket
    spec = importlib.util.spec_from_file_location('lab_launcher', ROOT/'tools'/'lab.py')
    launcher = importlib.util.module_from_spec(spec); spec.loader.exec_module(launcher)
    with socket.socket() as taken:
        taken.bind(('127.0.0.1', 0)); taken.listen()
        port = taken.getsockname()[1]
        assert not launcher.port_is_free('127.0.0.1', port)
        chosen = launcher.choose_port('127.0.0.1', port)
        assert chosen > port and launcher.port_is_free('127.0.0.1', chosen)
        with pytest.raises(SystemExit, match=rf'ports {port} to {port} on 127.0.0.1 are all taken: choose another, e.g. `make lab PORT='):
            launcher.choose_port('127.0.0.1', port, tries=1)
