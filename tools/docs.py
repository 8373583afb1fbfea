"""The documentation site and README.md, built from the notebooks offline (no Quarto).

    python tools/docs.py site [--out _docs]   # library notebooks executed (cached), nbdev's processing, Sphinx + MyST-NB
    python tools/docs.py readme [--check]     # README.md from nbs/index.ipynb (--check: fail when README.md differs)
    python tools/docs.py links [--out _docs]  # crawl the built site: every internal link, image and anchor resolves

Steps of `site`: every notebook goes through nbdev's processors (`FilterDefaults`: show_doc cells added and rendered
as Markdown, hidden and export cells removed, backtick names linked), in worker processes as `nbdev.serve.proc_nbs`
does; the Quarto cell options those leave (`echo`, `output: asis`, `include`, ...) become MyST-NB tags or Markdown
cells; each API entry gets the anchor nbdev's links use (`run.html#run.top_losses`); each experiment notebook gets its
papermill command and a table of its parameters; Sphinx renders the outputs with MyST-NB and the PyData theme.
A notebook that cannot be processed stops the build with its name and cell, not a stack trace.

The library notebooks are committed without outputs, so the build executes them first (`execute`), cell by cell as
`nbdev_test` does (the same skipped cells, in nbs/, in worker processes of one thread each), and renders what they
print, show and plot: the pages cannot go stale. A cell that raises stops the build, named with its notebook and its
number. Each executed notebook is kept in `_docs_cache/` under a hash of its text and of everything else its outputs
depend on (the library, settings.ini, the embedded data set's record, the versions of Python and the packages), so a
rebuild executes only the notebooks that changed. Why not MyST-NB's own execution (jupyter-cache): it executes the
notebook it renders, which nbdev's processing has already stripped of its hidden cells (the imports and set-up the
visible cells need); executing the notebook as written, before that processing, keeps hidden cells hidden and runs them.
The experiment notebooks are run with papermill (`run_examples`) on a slice of the embedded set, as a user runs them
(EXAMPLE_RUNS: each notebook once, `train` twice so that `ensemble` has two runs to combine); each experiment page ends
with its run's command, every section of its report, and the self-contained report itself, copied beside the page.
The runs are kept in `_docs_cache/` until a notebook, a parameter or the library changes. The guides (GUIDES, e.g.
`reading_a_report`) are prose around those reports: a line `<!-- report lite0: Leakage -->` becomes that section.
"""
from __future__ import annotations

import argparse
import concurrent.futures as futures
import functools
import hashlib
import html
import html.parser
import json
import multiprocessing
import os
import re
import shutil
import subprocess
import sys
import time
from configparser import ConfigParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import yaml

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT/'nbs'
CACHE = ROOT/'_docs_cache' # executed notebooks, by the hash of what their outputs depend on
LIBRARY, EXPERIMENTS = 'Library', 'Experiments'
GUIDES = ('reading_a_report', 'glossary') # pages of prose (the first around the example runs' reports): not executed, before the library
# nbdev's own directives (`#| export`), written without a colon, and the test flags of settings.ini
NBDEV_FLAGS = {'export', 'exports', 'exporti', 'hide', 'default_exp', 'exec_doc', 'hide_line', 'filter_stream'}
BOOL_OPTIONS = {'echo', 'include', 'eval', 'warning', 'error'}


class DocsError(Exception):
    "A notebook the site cannot be built from: the message names the notebook, the cell and the fix."


def settings(root:Path=ROOT)->dict:
    config = ConfigParser(delimiters=['='])
    config.read(root/'settings.ini', encoding='utf-8')
    return dict(config['DEFAULT'])


def page_name(path:Path)->str:
    "The page of a notebook, as nbdev names it: `03_run.ipynb` -> `run`; an experiment notebook goes under `experiments/`."
    stem = re.sub(r'^\d+[a-zA-Z0-9]*_', '', path.stem.lower())
    return f'experiments/{stem}' if is_experiment(path) else stem


def is_experiment(path:Path)->bool:
    "An experiment notebook is one that papermill parameterizes: it has a cell tagged `parameters`."
    cells = json.loads(Path(path).read_text(encoding='utf-8'))['cells']
    return any('parameters' in c.get('metadata', {}).get('tags', []) for c in cells)


def notebooks(nbs:Path=NBS)->list[Path]:
    "The notebooks of the site in nbdev's order (file names sorted; `_` scratch notebooks and checkpoints skipped)."
    return sorted(p for p in nbs.glob('*.ipynb') if not p.name.startswith(('_', '.')))


# ---------------------------------------------------------------- cell options
def _source(cell)->str:
    s = cell.get('source', '')
    return ''.join(s) if isinstance(s, list) else s


def cell_options(source:str, where:str)->tuple[dict, list[str], str]:
    """The leading `#|` lines of a cell: (Quarto options as parsed YAML, nbdev flags, the code without them).
    A line that is neither raises `DocsError` naming `where` and the fix."""
    options, flags, lines = {}, [], source.splitlines()
    while lines and lines[0].lstrip().startswith('#|'):
        line = lines.pop(0).strip()[2:].strip()
        if not line: continue
        key = line.split()[0]
        if ':' in key and not key.endswith(':'): key = key.split(':')[0] + ':'
        if key.endswith(':'):
            try: parsed = yaml.safe_load(line)
            except yaml.YAMLError as e:
                raise DocsError(f'{where}: the cell option `#| {line}` is not valid YAML ({str(e).splitlines()[0]}); '
                                'write it as `#| key: value`, e.g. `#| echo: false`') from None
            if not isinstance(parsed, dict) or len(parsed) != 1:
                raise DocsError(f'{where}: the cell option `#| {line}` is not one `key: value`; e.g. `#| echo: false`')
            (name, value), = parsed.items()
            if name in BOOL_OPTIONS and not isinstance(value, bool):
                raise DocsError(f'{where}: `#| {line}`: {name} takes true or false')
            if name == 'output' and value not in (True, False, 'asis'):
                raise DocsError(f'{where}: `#| {line}`: output takes true, false or asis')
            options[name] = value
        elif key in NBDEV_FLAGS or key in _test_flags():
            flags.append(key)
        else:
            hint = f' (did you mean `#| {key}: {" ".join(line.split()[1:])}`?)' if len(line.split()) > 1 else ''
            raise DocsError(f'{where}: unknown cell option `#| {line}`{hint}; Quarto options are written `#| key: value`, '
                            f'nbdev directives are {", ".join(sorted(NBDEV_FLAGS))}')
    return options, flags, '\n'.join(lines)


@functools.cache
def _test_flags()->set[str]:
    "The test flags of settings.ini (`#| slow`), read once: every `#|` line of every notebook is checked against them."
    return set(settings().get('tst_flags', '').split())


def check_options(path:Path):
    "Parse every cell option of a notebook before processing it, so that a typo is reported with its cell number."
    for i, cell in enumerate(json.loads(path.read_text(encoding='utf-8'))['cells']):
        if cell['cell_type'] == 'code': cell_options(_source(cell), f'{_rel(path)}, cell {i}')


def _rel(path:Path)->str:
    try: return Path(path).resolve().relative_to(ROOT).as_posix()
    except ValueError: return str(path)


# ---------------------------------------------------------------- executing the library notebooks
def depends_on()->str:
    """A hash of what every notebook's outputs depend on besides its own text: the library, settings.ini, the embedded
    data set's record, Python's version and the versions of the packages installed."""
    from importlib import metadata
    digest = hashlib.sha1(sys.version.encode())
    files = sorted((ROOT/'dogcls').rglob('*.py')) + [ROOT/'settings.ini', ROOT/'data'/'clipart'/'build.json']
    for f in files:
        if f.is_file(): digest.update(f.relative_to(ROOT).as_posix().encode() + f.read_bytes())
    digest.update(' '.join(sorted(f'{d.metadata["Name"]}=={d.version}' for d in metadata.distributions())).encode())
    return digest.hexdigest()


def _first_line(code:str)->str:
    lines = [l for l in code.splitlines() if l.strip() and not l.lstrip().startswith('#|')]
    return lines[0].strip() if lines else '?'


def execute_notebook(src:Path, dest:Path)->str|None:
    """Execute a notebook as `nbdev_test` does (its test flags' cells and `#| eval: false` cells skipped, in its own
    folder, `IN_TEST` set) and write it with its outputs into `dest`; an error comes back as text naming the notebook,
    the cell and the exception."""
    os.environ['IN_TEST'] = '1'
    from execnb.shell import CaptureShell
    from fastcore.xtras import working_directory
    from nbdev.process import NBProcessor
    nb = NBProcessor(src, rm_directives=False).nb # every cell as written, its directives parsed
    flags = _test_flags()
    def skip(cell):
        if cell.cell_type != 'code' or 'nbdev_export' + '(' in cell.source: return True
        directives = cell.directives_ or {}
        return directives.get('eval:', [''])[0].lower() == 'false' or bool(flags & directives.keys())
    for i, cell in enumerate(nb.cells): cell.idx_ = i
    shell = CaptureShell(src, mpl_format='png')
    with working_directory(src.parent):
        try: shell.run_all(nb, exc_stop=True, preproc=skip)
        except BaseException as e:
            i = shell._cell_idx - 1
            return (f'{_rel(src)}, cell {i} (`{_first_line(nb.cells[i].source)}`): {type(e).__name__}: {e}'.rstrip()
                    + '. Fix the cell, or mark it `#| eval: false` if it cannot run while the docs are built.')
        finally:
            import matplotlib.pyplot as plt
            plt.close('all')
    raw = json.loads(src.read_text(encoding='utf-8'))
    for cell, done in zip(raw['cells'], nb.cells, strict=True):
        if cell['cell_type'] == 'code': cell['outputs'] = json.loads(json.dumps(done.get('outputs', [])))
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f'.{dest.name}.{os.getpid()}')
    tmp.write_text(json.dumps(raw, indent=1, ensure_ascii=False), encoding='utf-8')
    tmp.replace(dest) # atomic: a killed build leaves no half-written notebook in the cache


def cached_path(src:Path, cache:Path, depends:str)->Path:
    "Where the executed copy of `src` is kept: its name and a hash of its text and of `depends_on()`."
    return cache/f'{src.stem}-{hashlib.sha1(src.read_bytes() + depends.encode()).hexdigest()[:16]}.ipynb'


# ---------------------------------------------------------------- nbdev's processing, in worker processes
def _process(src:Path, dest:Path, executed:Path|None=None)->str|None:
    """Run nbdev's processors over one notebook into `dest` (first executing it into `executed` when that is given and
    not there yet); an error comes back as text naming the notebook and cell."""
    os.environ['IN_TEST'] = '1' # as nbdev.serve_drv does: notebooks skip their slow work while being documented
    from execnb.nbio import read_nb, write_nb
    from nbdev.processors import FilterDefaults
    if executed is not None and not executed.is_file():
        error = execute_notebook(src, executed)
        if error: return error
    nb = read_nb(executed or src)
    try: FilterDefaults()(nb)
    except Exception as e:
        cause = e.__cause__ or e
        match = re.search(r' in cell \d+ :\n(.*)', str(e), re.S)
        code = match.group(1) if match else ''
        original = json.loads(Path(src).read_text(encoding='utf-8'))['cells']
        stripped = lambda s: '\n'.join(l for l in s.splitlines() if not l.lstrip().startswith('#|')).strip()
        index = next((i for i, c in enumerate(original) if code and stripped(_source(c)) == stripped(code)), None)
        cell = f'cell {index}' if index is not None else 'a cell nbdev added'
        return (f'{_rel(src)}, {cell} (`{stripped(code).splitlines()[0] if stripped(code) else "?"}`): '
                f'{type(cause).__name__}: {cause}'.rstrip() + '. Fix the cell (a show_doc of a name that no longer exists: '
                'show the new name or delete the cell) and build again.')
    write_nb(nb, dest)


def _one_thread():
    "Each worker process computes on one thread: torch's default of a thread per core in every worker oversubscribes them."
    for name in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS', 'OPENBLAS_NUM_THREADS'): os.environ.setdefault(name, '1')


def process(paths:list[Path], dest:Path, workers:int|None=None, execute:bool|set=False, cache:Path=CACHE,
            depends:str|None=None)->dict:
    """nbdev's processing of every notebook into `dest`, in parallel; every failing notebook is reported together.
    With `execute` (True, or a set of notebook stems) the library notebooks among them are executed first, or taken
    from `cache` when executed before with the same text and dependencies (`depends`: `depends_on()`, computed here when
    not given). Returns {'executed': n, 'cached': n}."""
    for p in paths: check_options(p)
    unknown = sorted(set(execute) - {p.stem for p in paths}) if isinstance(execute, (set, frozenset)) else []
    if unknown: raise DocsError(f'execute={unknown}: no such notebook among the {len(paths)} given (give notebook stems, e.g. 04c_dedup)')
    dest.mkdir(parents=True, exist_ok=True)
    run = [p for p in paths if not is_experiment(p) and p.stem not in GUIDES and (execute is True or (execute and p.stem in execute))]
    depends = (depends or depends_on()) if run else ''
    executed = {p: cached_path(p, cache, depends) for p in run}
    counts = dict(executed=sum(not e.is_file() for e in executed.values()), cached=sum(e.is_file() for e in executed.values()))
    workers = workers or min(len(paths), os.cpu_count() or 1)
    with futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context('spawn'), initializer=_one_thread) as pool:
        errors = [e for e in pool.map(_process, paths, [dest/p.name for p in paths], [executed.get(p) for p in paths]) if e]
    if errors: raise DocsError('\n'.join(errors))
    for p, e in executed.items(): # the cache keeps the newest copy of each notebook
        for old in cache.glob(f'{p.stem}-*.ipynb'):
            if old != e: old.unlink(missing_ok=True)
    return counts


# ---------------------------------------------------------------- the experiment pages' example runs
EXAMPLE_CLASSES = 12 # the first classes of the embedded set (sorted names) the example runs use
# the example runs, in the order they run (a later one reads an earlier one's outputs); an experiment page shows the
# report of its notebook's first run. `{reports}` is the runs' reports folder.
FROZEN = dict(size='full', freeze='backbone', head='mlp', head_dropout=0.3, epochs=15, folds=3,
              dedup_decisions='{reports}/dedup/decisions.csv', gallery=8, gradcam=4)
EXAMPLE_RUNS = [
    ('eda', 'eda', dict(samples=12)),
    ('dedup', 'dedup', {}),
    ('augment', 'augment', dict(specs=['canny', 'blur'], folds=2, epochs=1, img_size=32, gallery_images=2)),
    ('train', 'lite0', dict(arch='efficientnet_lite0', **FROZEN)),
    ('train', 'lite1', dict(arch='efficientnet_lite1', **FROZEN)),
    ('clean', 'clean', dict(runs='["lite0"]', gallery=8, gradcam=4)),
    ('ensemble', 'ensemble', dict(runs='["lite0", "lite1"]')),
]


def example_parameters(notebook:str, run_name:str, parameters:dict, data:Path, reports:Path)->dict:
    "The papermill parameters of an example run: the slice, the reports folder and its name, then its own (`{reports}` filled in)."
    fill = lambda v: v.replace('{reports}', str(reports)) if isinstance(v, str) else v
    return dict(data=str(data), reports=str(reports), run_name=run_name) | {k: fill(v) for k, v in parameters.items()}


def examples_key(runs=EXAMPLE_RUNS, depends:str='')->str:
    "A hash of what the example runs depend on: their notebooks, parameters and slice, and `depends_on()`."
    digest = hashlib.sha1((repr(runs) + str(EXAMPLE_CLASSES) + depends).encode())
    for name in sorted({nb for nb, _, _ in runs}): digest.update((NBS/f'{name}.ipynb').read_bytes())
    return digest.hexdigest()[:16]


def _papermill_error(e:Exception, notebook:str, run_name:str)->str:
    "A failed example run as one line: the notebook, the run, the cell and the exception."
    cell = getattr(e, 'exec_count', None)
    where = f'nbs/{notebook}.ipynb (the docs\' example run `{run_name}`' + (f', cell [{cell}]' if cell else '') + ')'
    what = f'{e.ename}: {e.evalue}' if hasattr(e, 'ename') else f'{type(e).__name__}: {e}'
    return f'{where}: {what}. Fix the notebook, or the example\'s parameters in tools/docs.py (EXAMPLE_RUNS).'


def run_examples(cache:Path=CACHE, runs=EXAMPLE_RUNS, log=print, depends:str|None=None)->tuple[Path, int]:
    """Run the experiment notebooks on a slice of the embedded set as `runs` says, once: the reports folder is kept in
    `cache` under `examples_key` and reused until a notebook, the library or a parameter changes. Returns the reports
    folder and the number of runs executed now (0: all from the cache). A failing run raises `DocsError`. `depends`:
    `depends_on()`, computed here when not given."""
    import papermill as pm
    key = examples_key(runs, depends or depends_on())
    done = cache/f'examples-{key}' # where the runs are made, so that the folders their reports name stay there
    if (done/'complete').is_file(): return done/'reports', 0
    shutil.rmtree(done, ignore_errors=True) # an interrupted build's runs: made again
    try:
        from dogcls.clipart import clipart_slice
        data, reports = clipart_slice(done/'data', EXAMPLE_CLASSES), done/'reports'
        _one_thread() # the runs share the cores with the library notebooks' workers
        for notebook, run_name, parameters in runs:
            started = time.time()
            params = example_parameters(notebook, run_name, parameters, data, reports)
            (reports/run_name).mkdir(parents=True, exist_ok=True)
            try:
                pm.execute_notebook(str(NBS/f'{notebook}.ipynb'), str(reports/run_name/f'{notebook}.ipynb'), parameters=params,
                                    kernel_name='python3', progress_bar=False, cwd=str(NBS), log_output=False)
            except Exception as e:
                raise DocsError(_papermill_error(e, notebook, run_name)) from None
            if not (reports/run_name/'report.html').is_file():
                raise DocsError(f'nbs/{notebook}.ipynb (the docs\' example run `{run_name}`) wrote no report.html')
            log(f'example run {notebook}/{run_name}: {time.time() - started:.0f} s')
    except BaseException:
        shutil.rmtree(done, ignore_errors=True) # nothing half-made is kept
        raise
    (done/'complete').write_text(json.dumps([name for _, name, _ in runs]))
    for old in cache.glob('examples-*'):
        if old != done: shutil.rmtree(old, ignore_errors=True)
    return done/'reports', len(runs)


def report_sections(page:str)->list[tuple[str, str]]:
    "A report's HTML as (heading, body) pairs: its warnings block first (heading 'Warnings'), then each `<h2>` section."
    body = re.search(r'<body>(.*)</body>', page, re.S).group(1)
    warnings = re.search(r'<(div class="warnings"|p class="no-warnings").*?</(div|p)>', body, re.S)
    sections = [('Warnings', warnings.group(0))] if warnings else []
    for heading, content in re.findall(r'<h2>(.*?)</h2>(.*?)(?=<h2>|\Z)', body, re.S):
        sections.append((html.unescape(heading), content.strip()))
    return sections


def example_command(notebook:str, run_name:str, parameters:dict)->str:
    "The papermill command of an example run, as a user would type it (the slice as `slice/`, reports in `reports/`)."
    import shlex
    args = []
    for k, v in example_parameters(notebook, run_name, parameters, Path('slice'), Path('reports')).items():
        if k == 'reports': continue
        args.append(f"-y {shlex.quote(f'{k}: {json.dumps(v)}')}" if isinstance(v, list) else f'-p {k} {shlex.quote(str(v))}')
    lines = [f'papermill nbs/{notebook}.ipynb reports/{run_name}/{notebook}.ipynb']
    for arg in args: # continued lines of up to about 100 characters
        if len(lines[-1]) + len(arg) > 100: lines.append(' ')
        lines[-1] += ' ' + arg
    return ' \\\n'.join(lines)


REPORT_LINK = 'examples/{run}.html' # where a page's example report is copied in the site, beside the experiment pages


def _report_cell(body:str)->dict:
    "A section of a report as a code cell whose input is hidden and whose output is the section's HTML."
    return dict(cell_type='code', metadata={'tags': ['remove-input']}, source='# a section of the report', execution_count=None,
                outputs=[dict(output_type='display_data', metadata={}, data={'text/html': f'<div class="dogcls-report">{body}</div>'})])


def example_cells(notebook:str, reports:Path|None, runs=EXAMPLE_RUNS)->list[dict]:
    """The end of an experiment page: its first example run's command and every section of its report, each under its
    heading, and a link to the whole self-contained report. Nothing when the notebook has no example run in `reports`."""
    run = next(((name, params) for nb, name, params in runs if nb == notebook), None)
    if reports is None or run is None or not (reports/run[0]/'report.html').is_file(): return []
    name, params = run
    page = (reports/name/'report.html').read_text(encoding='utf-8')
    counts = _slice_counts(reports.parent/'data')
    intro = (f'## An example run\n\nThe report below was written when this site was built, by this notebook run on the first '
             f'{EXAMPLE_CLASSES} classes of the embedded set ({counts}):\n\n```bash\n{example_command(notebook, name, params)}\n```\n\n'
             f'It is a small run, so its figures say what each section shows, not what dogcls scores. '
             f'[The whole report]({REPORT_LINK.format(run=name)}) is one self-contained HTML file, as every run writes it. '
             '[Reading a report](../reading_a_report.html) says what each section tells you and what to do about a bad sign.')
    cells = [_markdown(intro)]
    for heading, body in report_sections(page):
        cells += [_markdown(f'### {heading}'), _report_cell(body)]
    return cells


def _slice_counts(data:Path)->str:
    import pandas as pd
    if not (data/'train.csv').is_file(): return 'a slice'
    return f'{len(pd.read_csv(data/"train.csv"))} training and {len(pd.read_csv(data/"test.csv"))} test images'


_PLACEHOLDER = re.compile(r'^<!-- report ([\w.-]+): (.+?) -->\s*$', re.M)


def fill_reports(nb:dict, reports:Path|None, where:str)->dict:
    """A guide page's placeholders, lines `<!-- report lite0: Leakage -->` in its Markdown, become that section of the
    example run's report; without the example runs, a note says where to see it. An unknown run or section raises
    `DocsError` naming the notebook, the cell and the sections there are."""
    cells, known, parsed = [], {name for _, name, _ in EXAMPLE_RUNS}, {}
    for i, cell in enumerate(nb['cells']):
        src = _source(cell)
        if cell['cell_type'] != 'markdown' or not _PLACEHOLDER.search(src): cells.append(cell); continue
        start = 0
        for m in _PLACEHOLDER.finditer(src):
            if src[start:m.start()].strip(): cells.append(_markdown(src[start:m.start()]))
            start = m.end()
            run, heading = m.group(1), m.group(2).strip()
            if run not in known: raise DocsError(f'{where}, cell {i}: no example run `{run}` (there are {", ".join(sorted(known))})')
            page = reports/run/'report.html' if reports else None
            if page is None or not page.is_file():
                cells.append(_markdown(f'*(The section "{heading}" of the example run `{run}` is shown here when the site is '
                                       'built with its example runs: `make docs`.)*'))
                continue
            if run not in parsed: parsed[run] = dict(report_sections(page.read_text(encoding='utf-8')))
            sections = parsed[run]
            if heading not in sections:
                raise DocsError(f'{where}, cell {i}: the report of the example run `{run}` has no section "{heading}" '
                                f'(it has: {"; ".join(sections)})')
            cells.append(_report_cell(sections[heading]))
        if src[start:].strip(): cells.append(_markdown(src[start:]))
    return dict(nb, cells=cells)


# ---------------------------------------------------------------- Quarto options -> MyST-NB
_LINK_ATTRS = re.compile(r'(\]\([^)]*\))\{[^}]*\}') # [source](url){target="_blank" style=...}: Quarto link attributes
_ENTRY = re.compile(r'^(#{2,4}) (\S+)\s*$', re.M)      # a show_doc heading: `### Run.top_losses`


def docutils_id(text:str)->str:
    from docutils.nodes import make_id
    return make_id(text)


def show_doc_markdown(text:str)->tuple[str, str|None]:
    """show_doc's Markdown as a page section: the entry's heading first, with the anchor nbdev's links use (the lowercased
    name) where Sphinx's own id differs, then its source link; Quarto's rule and link attributes dropped. Returns the
    Markdown and the entry's name."""
    text = re.sub(r'^\s*---\s*\n', '', _LINK_ATTRS.sub(r'\1', text)) # Quarto's rule above each entry: a section may not open with one
    source = re.match(r'\s*(\[source\]\([^)]*\))\s*\n', text)
    if source: text = text[source.end():]
    entry = _ENTRY.search(text)
    if not entry: return text, None
    name = entry.group(2).lower()
    anchor = '' if docutils_id(name) == name else f'<a id="{name}"></a>\n\n'
    heading = entry.group(0) + (f'\n\n{source.group(1)}' if source else '')
    return text[:entry.start()] + anchor + heading + text[entry.end():], name


def relink(text:str, depth:int, host:str, pages:dict[str, str], entries:dict[str, set])->str:
    """Links made relative to a page `depth` folders down: nbdev's absolute links to this site (a name whose page has no
    entry for it, e.g. a private helper, stays code without a link), and links to notebooks (their pages)."""
    up = '../' * depth
    def api(m):
        page, anchor = m.group(2)[:-len('.html')], m.group(3)
        if anchor and anchor not in entries.get(page, set()): return m.group(1)
        return f'[{m.group(1)}]({up}{m.group(2)}{"#" + anchor if anchor else ""})'
    text = re.sub(r'\[([^\]]*)\]\(' + re.escape(host) + r'([\w/.-]+\.html)(?:#([^)\s]+))?\)', api, text)
    def notebook(m):
        target = Path(m.group(2)).name
        return f'{m.group(1)}({up}{pages[target]}.html{m.group(3) or ""})' if target in pages else m.group(0)
    return re.sub(r'(\[[^\]]*\])\((?!https?:)([^)#\s]+\.ipynb)(#[^)\s]*)?\)', notebook, text)


def _front_matter(raw:str)->dict:
    return (yaml.safe_load(raw.strip().strip('-')) or {}) if raw else {}


def _markdown(text:str)->dict:
    return dict(cell_type='markdown', metadata={}, source=text)


def translate(nb:dict, where:str)->tuple[dict, set[str]]:
    """A processed notebook for MyST-NB: Quarto options as tags or Markdown cells, front matter as the title, each
    show_doc entry once (nbdev adds one after a definition that the notebook may show again). Returns it and its entries."""
    cells, entries = [], set()
    for i, cell in enumerate(nb['cells']):
        if 'source' not in cell: continue # removed by nbdev (hidden, exported)
        src = _source(cell)
        if cell['cell_type'] == 'raw' and src.strip().startswith('---'):
            front = _front_matter(src)
            if front.get('title'): cells.append(_markdown(f'# {front["title"]}\n\n' + (f'{front["description"]}' if front.get('description') else '')))
            continue
        if cell['cell_type'] == 'markdown':
            cells.append(_markdown(src)); continue
        if cell['cell_type'] != 'code': continue
        options, _, code = cell_options(src, f'{where}, processed cell {i}')
        if options.get('include') is False: continue
        outputs = cell.get('outputs', [])
        if options.get('output') == 'asis':
            for o in outputs:
                data = o.get('data', {})
                text = data.get('text/markdown') or data.get('text/plain') or o.get('text')
                if not text: continue
                text, entry = show_doc_markdown(_source(dict(source=text)))
                if entry in entries: continue
                if entry: entries.add(entry)
                cells.append(_markdown(text))
            continue
        tags = [t for t in cell.get('metadata', {}).get('tags', [])]
        if options.get('echo') is False: tags.append('remove-input')
        if options.get('output') is False: tags.append('remove-output')
        if not code.strip() and not outputs: continue
        cells.append(dict(cell_type='code', metadata={'tags': tags} if tags else {}, source=code, outputs=outputs, execution_count=None))
    for n, cell in enumerate(cells): cell['id'] = f'cell{n}'
    nb = dict(nb, cells=cells)
    nb['metadata'] = {k: v for k, v in nb.get('metadata', {}).items() if k in ('kernelspec', 'language_info')}
    return nb, entries


# ---------------------------------------------------------------- experiment pages
def parameters_markdown(path:Path)->str:
    "How to run an experiment notebook: its papermill command and every parameter with its default and comment."
    import papermill as pm
    params = pm.inspect_notebook(str(path))
    pipes = lambda text: text.replace('|', '\\|')
    rows = '\n'.join(f'| `{p["name"]}` | `{pipes(p["default"])}` | {pipes(html.escape(p["help"], quote=False))} |' for p in params.values())
    return (f'## Run it\n\n```bash\npapermill nbs/{path.name} reports/my-{path.stem}/{path.name} -p run_name my-{path.stem}\n```\n\n'
            'Every parameter below can be changed with `-p name value` (a list as a JSON string, or with `-y \'name: [a, b]\'`); '
            f'the outputs go to `reports/<run_name>/`.\n\n| parameter | default | what it is |\n|---|---|---|\n{rows}\n')


# ---------------------------------------------------------------- the site
CONF = '''# written by tools/docs.py
project = {title!r}
author = {author!r}
copyright = {copyright!r}
release = {version!r}
extensions = ['myst_nb']
nb_execution_mode = 'off'          # the outputs tools/docs.py stored are rendered: Sphinx executes nothing
myst_all_links_external = True     # links are written as URLs (nbdev's links, made relative): no cross-reference lookup
myst_heading_anchors = 0
suppress_warnings = ['myst.header'] # show_doc entries are level-3 headings under the page title
html_theme = 'pydata_sphinx_theme'
html_title = {title!r}
html_show_sourcelink = False
html_copy_source = False
html_theme_options = dict(navigation_with_keys=False, show_toc_level=2, secondary_sidebar_items=['page-toc'],
                          footer_start=['copyright'], footer_end=[])
html_sidebars = {sidebars!r}
html_static_path = ['_static']
html_favicon = '_static/favicon.png'
html_css_files = ['dogcls.css']
html_context = dict(default_mode='light') # the theme logs a console error while no mode is stored
'''


def toctree(pages:list[str], caption:str='')->str:
    return '```{toctree}\n:hidden:\n' + (f':caption: {caption}\n' if caption else '') + '\n' + '\n'.join(pages) + '\n```\n'


def front_matter(nb:dict)->dict:
    "The title and description nbdev's processing put in a notebook's front matter."
    raw = next((_source(c) for c in nb['cells'] if c['cell_type'] == 'raw' and _source(c).strip().startswith('---')), '')
    return _front_matter(raw)


def section_page(title:str, intro:str, pages:list[tuple[str, dict]], depth:int)->str:
    "A section's own page: what each of its pages is, and the page tree of the section."
    names = [(page.split('/')[-1] if depth else page, f) for page, f in pages] # relative to the section page
    items = '\n'.join(f'- [{f.get("title", name)}]({name}.html): {f.get("description", "")}' for name, f in names)
    return f'# {title}\n\n{intro}\n\n{items}\n\n' + toctree([name for name, _ in names])


CSS = """/* written by tools/docs.py: room for the notebooks' 120-character code lines */
.bd-page-width { max-width: 110rem; }
.bd-main .bd-content .bd-article-container { max-width: 100%; }
"""


PAGE_ONLY = {'body', 'h1', 'h2', '.subtitle'} # a report page's own frame: inside a docs page, the theme's


def report_css()->str:
    """The styles of a report's sections inside a docs page: the report's own (`dogcls.report.REPORT_CSS`) scoped to
    `.dogcls-report`, without those of its page frame, and a rule setting the sections apart from the prose."""
    from dogcls.report import REPORT_CSS
    rules = ['/* a report\'s sections inside a page (tools/docs.py: report_css) */',
             '.dogcls-report { overflow-x: auto; border-left: 3px solid #d0d7de; padding-left: 1em; margin-bottom: 1em; }']
    for selectors, body in re.findall(r'([^{}]+)\{([^}]*)\}', REPORT_CSS):
        kept = [f'.dogcls-report {sel.strip()}' for sel in selectors.split(',') if sel.strip() not in PAGE_ONLY]
        if kept: rules.append(f'{", ".join(kept)} {{ {" ".join(body.split())} }}')
    return '\n'.join(rules) + '\n'


def favicon(path:Path):
    "A small icon, so that a browser showing the site does not ask the server for /favicon.ico and log a 404."
    from PIL import Image, ImageDraw
    im = Image.new('RGB', (32, 32), (13, 110, 253))
    ImageDraw.Draw(im).rectangle((8, 8, 23, 23), outline='white', width=3)
    im.save(path)


def stage(paths:list[Path], processed:Path, source:Path, reports:Path|None=None):
    """Write the Sphinx source folder: one MyST-NB notebook per page, the section pages, conf.py, styles and images; with
    `reports` (the example runs), each experiment page ends with its example report and the guides show theirs."""
    cfg = settings()
    host = cfg['doc_host'].rstrip('/') + cfg['doc_baseurl'].rstrip('/') + '/'
    pages = {p.name: page_name(p) for p in paths}
    experiment = {p: pages[p.name].startswith('experiments/') for p in paths}
    translated, entries, fronts = {}, {}, {}
    for p in paths:
        nb = json.loads((processed/p.name).read_text(encoding='utf-8'))
        fronts[p] = front_matter(nb)
        translated[p], entries[pages[p.name]] = translate(nb, _rel(p))
    library = [(pages[p.name], fronts[p]) for p in paths if pages[p.name] not in ('index', *GUIDES) and not experiment[p]]
    experiments = [(pages[p.name], fronts[p]) for p in paths if experiment[p]]
    for p, nb in translated.items():
        page = pages[p.name]
        for cell in nb['cells']:
            if cell['cell_type'] == 'markdown': cell['source'] = relink(cell['source'], page.count('/'), host, pages, entries)
        if experiment[p]:
            nb['cells'].insert(1, dict(_markdown(parameters_markdown(p)), id='parameters-table'))
            nb['cells'] += [dict(c, id=f'example{n}') for n, c in enumerate(example_cells(p.stem, reports))]
        if page in GUIDES: nb = fill_reports(nb, reports, _rel(p))
        if page == 'index':
            guides = [g for g in GUIDES if g in pages.values()]
            nb['cells'].append(dict(_markdown(toctree([*guides, 'library', 'experiments/index'])), id='toctree'))
        out = source/f'{page}.ipynb'
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(nb, indent=1, ensure_ascii=False), encoding='utf-8')
    (source/'library.md').write_text(section_page(LIBRARY, 'The modules of `dogcls`, one notebook each, in pipeline order: '
                                                  'their functions and classes with an example and a check after each.', library, 0))
    (source/'experiments').mkdir(exist_ok=True)
    (source/'experiments'/'index.md').write_text(section_page(EXPERIMENTS, 'The notebooks papermill runs into a report: '
                                                              'each page shows its parameters and its papermill command.', experiments, 1))
    for folder in ('images',):
        if (NBS/folder).is_dir(): shutil.copytree(NBS/folder, source/folder, dirs_exist_ok=True)
    (source/'_static').mkdir(exist_ok=True)
    (source/'_static'/'dogcls.css').write_text(CSS + report_css())
    favicon(source/'_static'/'favicon.png')
    (source/'conf.py').write_text(CONF.format(**cfg, sidebars={page: [] for page in ('index', *GUIDES)}))


def sphinx(source:Path, out:Path, pages:dict[str, Path]):
    "Sphinx over the staged pages into `out` (MyST-NB writes beside it); any warning fails the build, named by its notebook."
    proc = subprocess.run([sys.executable, '-m', 'sphinx', '-b', 'html', '-q', '-E', '-W', '--keep-going', '-j', 'auto',
                           '-d', str(out.parent/'doctrees'), str(source), str(out)], capture_output=True, text=True)
    if proc.returncode:
        text = proc.stderr
        for page, nb in pages.items(): text = text.replace(str(source/f'{page}.ipynb'), _rel(nb))
        raise DocsError(f'Sphinx could not build the site:\n{text.strip()}')


def build_site(out:Path=ROOT/'_docs', work:Path=ROOT/'_proc', nbs:Path=NBS, execute:bool|set=True, cache:Path=CACHE,
               examples:bool|set=True)->dict:
    """Build the site into `out`, the library notebooks executed (`execute`: True, False, or a set of notebook stems; see
    `process`) and the experiment notebooks' example runs made (`examples`: True, False, or a set of run names; see
    `run_examples`); returns the figures of the build (pages, notebooks executed and taken from the cache, example runs
    made, seconds)."""
    started = time.time()
    paths = notebooks(nbs)
    if not any(p.name == 'index.ipynb' for p in paths): raise DocsError(f'{_rel(nbs)}: no index.ipynb (the home page and README)')
    shutil.rmtree(work, ignore_errors=True)
    runs = [r for r in EXAMPLE_RUNS if examples is True or (examples and r[1] in examples)]
    depends = depends_on() if runs or execute else None # what the executed notebooks and the example runs depend on
    # the example runs in their own process while the library notebooks execute: both are partly idle on their own
    with futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context('spawn')) as pool:
        pending = pool.submit(run_examples, cache, runs, depends=depends) if runs else None
        counts = process(paths, work/'nbdev', execute=execute, cache=cache, depends=depends)
        processed_at = time.time()
        reports, made = pending.result() if pending else (None, 0)
    examples_at = time.time()
    stage(paths, work/'nbdev', work/'site', reports)
    sphinx(work/'site', work/'html', {page_name(p): p for p in paths})
    for _, name, _ in runs: # each example report beside the pages, as the self-contained file a run writes
        target = work/'html'/'experiments'/REPORT_LINK.format(run=name)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(reports/name/'report.html', target)
    shutil.rmtree(out, ignore_errors=True)
    shutil.move(work/'html', out)
    return dict(pages=len(paths), **counts, examples=made, examples_cached=len(runs) - made,
                process_seconds=round(processed_at - started, 1), examples_seconds=round(examples_at - started, 1),
                seconds=round(time.time() - started, 1))


# ---------------------------------------------------------------- README.md from nbs/index.ipynb
README_HEADER = '<!-- written by `python tools/docs.py readme` from nbs/index.ipynb: edit the notebook, not this file -->\n\n'


def readme_text(index:Path=NBS/'index.ipynb')->str:
    "README.md as nbs/index.ipynb gives it (nbconvert's Markdown; `#| hide` cells dropped, relative links into nbs/)."
    import nbformat
    from nbconvert import MarkdownExporter
    nb = nbformat.read(index, as_version=4)
    keep = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == 'raw': continue
        if cell.cell_type == 'code':
            options, flags, code = cell_options(cell.source, f'{_rel(index)}, cell {i}')
            if 'hide' in flags or options.get('include') is False: continue
            cell.source = code
        keep.append(cell)
    nb.cells = keep
    body, _ = MarkdownExporter().from_notebook_node(nb)
    def local(m):
        target = m.group(2)
        path, _, anchor = target.partition('#')
        if re.match(r'[a-z]+:|#|/', target) or not (index.parent/path).exists(): return m.group(0)
        return f'{m.group(1)}({(index.parent/path).resolve().relative_to(ROOT).as_posix()}{"#" + anchor if anchor else ""})'
    body = re.sub(r'(!?\[[^\]]*\])\(([^)\s]+)\)', local, body)
    return README_HEADER + re.sub(r'\n{3,}', '\n\n', body).strip() + '\n'


def write_readme(check:bool=False, path:Path=ROOT/'README.md')->bool:
    "Write README.md; with `check`, only say whether it is what nbs/index.ipynb gives."
    text = readme_text()
    if check: return path.is_file() and path.read_text(encoding='utf-8') == text
    path.write_text(text, encoding='utf-8')
    return True


# ---------------------------------------------------------------- the crawler
class _Page(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.ids, self.links = [], []
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for key in ('id', 'name' if tag == 'a' else None):
            if key and a.get(key): self.ids.append(a[key])
        for key in ('href', 'src'):
            if a.get(key) and not (tag == 'link' and a.get('rel') in ('canonical',)): self.links.append((tag, key, a[key]))


def check_links(site:Path)->dict:
    """Every internal link, image, script and stylesheet of every page resolves to a file, and every `#anchor` to an id
    on its page; ids are unique on a page. Returns counts and the broken ones (external links are not followed)."""
    pages, broken, checked, duplicates = {}, [], 0, []
    for path in sorted(p for p in site.rglob('*.html') if '_static' not in p.relative_to(site).parts): # _static: theme templates
        parser = _Page(); parser.feed(path.read_text(encoding='utf-8')); pages[path.resolve()] = parser
        seen = set()
        for i in parser.ids:
            if i in seen: duplicates.append(f'{path.relative_to(site)}: id {i!r} twice')
            seen.add(i)
    for path, parser in pages.items():
        for tag, key, link in parser.links:
            url = urlsplit(link)
            if url.scheme in ('http', 'https', 'mailto', 'data', 'javascript') or link.startswith('//'): continue
            checked += 1
            target = path if not url.path else (path.parent/unquote(url.path)).resolve()
            if target.is_dir(): target = target/'index.html'
            where = f'{path.relative_to(site.resolve())}: <{tag} {key}="{link}">'
            if not target.is_file(): broken.append(f'{where}: no file {target}'); continue
            if url.fragment and target.suffix == '.html':
                ids = pages[target].ids if target in pages else []
                if unquote(url.fragment) not in ids: broken.append(f'{where}: no anchor #{url.fragment} on {target.name}')
    return dict(pages=len(pages), links=checked, broken=broken, duplicate_ids=duplicates)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('what', choices=['site', 'readme', 'links'])
    parser.add_argument('--out', default=str(ROOT/'_docs'), help='site folder (site, links)')
    parser.add_argument('--check', action='store_true', help='readme: fail when README.md is not what nbs/index.ipynb gives')
    parser.add_argument('--no-execute', action='store_true', help='site: render the notebooks as committed (no outputs, no example runs)')
    args = parser.parse_args(argv)
    try:
        if args.what == 'readme':
            if write_readme(args.check): print('README.md is what nbs/index.ipynb gives' if args.check else 'README.md written from nbs/index.ipynb')
            else: sys.exit('README.md differs from what nbs/index.ipynb gives: run `python tools/docs.py readme` '
                           '(make readme) and commit README.md; edit nbs/index.ipynb, not README.md')
            return
        out = Path(args.out)
        if args.what == 'site':
            figures = build_site(out, execute=not args.no_execute, examples=not args.no_execute)
            print(f'{figures["pages"]} pages built into {out} in {figures["seconds"]} s (notebooks executed {figures["executed"]}, '
                  f'from the cache {figures["cached"]}; execution and nbdev processing {figures["process_seconds"]} s; '
                  f'example runs made {figures["examples"]}, from the cache {figures["examples_cached"]}, '
                  f'{figures["examples_seconds"]} s, at the same time)')
        links = check_links(out)
        print(f'{links["pages"]} HTML files, {links["links"]} internal links checked, {len(links["broken"])} broken, '
              f'{len(links["duplicate_ids"])} duplicate ids')
        if links['broken'] or links['duplicate_ids']: sys.exit('\n'.join(links['broken'] + links['duplicate_ids']))
    except DocsError as e:
        sys.exit(f'make docs: {e}')


if __name__ == '__main__': # as the module `docs`, so that worker processes find its functions
    sys.path.insert(0, str(Path(__file__).parent))
    import docs
    docs.main()
