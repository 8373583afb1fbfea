"""Notebook shape figures (they measure code, not speed: a tool, not a benchmark): code lines of each experiment
notebook, and of the library notebooks the mean lines per exported cell, exported definitions, and example/check cells
per exported definition.

    .venv/bin/python tools/notebook_stats.py [--rev GIT_REV]   # default: the working tree; a rev reads nbs/ at that commit
"""
import argparse
import ast
import json
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ('eda', 'dedup', 'augment', 'train', 'clean', 'ensemble')

def notebooks(rev):
    if rev is None: return {p.stem: json.loads(p.read_text()) for p in sorted((ROOT/'nbs').glob('*.ipynb'))}
    names = subprocess.run(['git', 'ls-tree', '--name-only', rev, 'nbs/'], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    return {Path(n).stem: json.loads(subprocess.run(['git', 'show', f'{rev}:{n}'], cwd=ROOT, capture_output=True, text=True, check=True).stdout)
            for n in names if n.endswith('.ipynb')}

def code_lines(source):
    "Lines that are code: not blank, not only a comment, not an nbdev directive."
    return sum(1 for l in source.splitlines() if l.strip() and not l.strip().startswith('#'))

def definitions(source):
    "Top-level functions, classes and constants an export cell defines (private names included: they are documented too)."
    try: tree = ast.parse(source)
    except SyntaxError: return 0
    n = 0
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)): n += 1
        elif isinstance(node, ast.Assign) and all(isinstance(t, ast.Name) and t.id.isupper() for t in node.targets): n += 1
    return n

def public_names(source):
    "Public top-level names an export cell defines."
    try: tree = ast.parse(source)
    except SyntaxError: return []
    names = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)): names.append(node.name)
        elif isinstance(node, ast.Assign): names += [t.id for t in node.targets if isinstance(t, ast.Name) and t.id.isupper()]
    return [n for n in names if not n.startswith('_')]

CHECK = re.compile(r'\b(assert|test_\w+|pytest\.raises)\b')

def unshown(cells):
    "Public names of the export cells that no later example cell both uses and checks (assert, test_eq, ...)."
    pending = []
    for kind, src in cells:
        if kind == 'export': pending += public_names(src)
        elif kind == 'example' and CHECK.search(src):
            pending = [n for n in pending if not re.search(rf'\b{n}\b', src)]
    return pending

def main(rev=None):
    nbs = notebooks(rev)
    print(f'nbs/ at {rev or "the working tree"}')
    print('\nexperiment notebooks: code lines (not blank, not comment-only; parameters cell included / excluded)')
    total = 0
    for name in EXPERIMENTS:
        if name not in nbs: continue
        cells = [c for c in nbs[name]['cells'] if c['cell_type'] == 'code']
        lines = sum(code_lines(''.join(c['source'])) for c in cells)
        params = sum(code_lines(''.join(c['source'])) for c in cells if 'parameters' in c.get('metadata', {}).get('tags', []))
        total += lines - params
        print(f'  {name:10s} {lines:4d} / {lines - params:4d}')
    print(f'  {"all":10s}      {total:4d}')
    print('\nlibrary notebooks: export cells, mean code lines per export cell, exported definitions, example cells, show_doc cells, examples per definition,')
    print('export cells over 40 code lines, public definitions without a checked example after them')
    sums, long_cells, missing = [0, 0, 0, 0, 0], 0, {}
    for name, nb in nbs.items():
        if not re.match(r'\d', name): continue
        export = ex = shown = lines = defs = longest = 0; kinds = []
        for c in nb['cells']:
            if c['cell_type'] != 'code': continue
            src = ''.join(c['source'])
            if re.search(r'^#\|\s*(export|exports)\b', src, re.M):
                export += 1; lines += code_lines(src); defs += definitions(src); kinds.append(('export', src))
                long_cells += code_lines(src) > 40; longest += code_lines(src) > 40
            elif re.search(r'^#\|\s*(hide|default_exp)', src, re.M) or 'nbdev_export()' in src: continue
            elif 'show_doc(' in src: shown += 1
            else: ex += 1; kinds.append(('example', src))
        if not export: continue
        missing[name] = unshown(kinds)
        sums = [a + b for a, b in zip(sums, (export, lines, defs, ex, shown), strict=True)]
        print(f'  {name:14s} {export:3d} cells  {lines / export:5.1f} lines/cell  {defs:3d} definitions  {ex:3d} examples  {shown:2d} show_doc  '
              f'{ex / max(defs, 1):4.2f} per definition  {longest} over 40  {len(missing[name])} unshown')
    export, lines, defs, ex, shown = sums
    print(f'  {"all":14s} {export:3d} cells  {lines / export:5.1f} lines/cell  {defs:3d} definitions  {ex:3d} examples  {shown:2d} show_doc  '
          f'{ex / max(defs, 1):4.2f} per definition  {long_cells} over 40  {sum(map(len, missing.values()))} unshown')
    for name, names in missing.items():
        if names: print(f'  without a checked example in {name}: {", ".join(names)}')

if __name__ == '__main__':
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--rev', default=None, help='a git revision (default: the working tree)')
    main(parser.parse_args().rev)
