"""The layers contract of .importlinter (`make lint` runs `lint-imports`): kept by the library as it is, broken by a
module that imports one above its own layer, even inside a function."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import ROOT


def lint_imports(package_parent):
    "lint-imports (from this Python's environment) with this checkout's contract, over the dogcls package under `package_parent`."
    return subprocess.run([str(Path(sys.executable).parent/'lint-imports'), '--config', str(ROOT/'.importlinter'), '--no-cache'],
                          cwd=package_parent, env=dict(os.environ, PYTHONPATH=str(package_parent)), capture_output=True, text=True)


def test_the_library_keeps_its_layers_and_a_lower_module_importing_a_higher_one_breaks_them(tmp_path):
    shutil.copytree(ROOT/'dogcls', tmp_path/'dogcls')
    kept = lint_imports(tmp_path)
    assert kept.returncode == 0 and 'Contracts: 3 kept, 0 broken.' in kept.stdout, kept.stdout + kept.stderr
    data = tmp_path/'dogcls'/'data.py'
    data.write_text(data.read_text() + '\n\ndef _trained():\n    from dogcls.train import train_kfold # up from data: not allowed\n    return train_kfold\n')
    broken = lint_imports(tmp_path)
    assert broken.returncode == 1 and 'dogcls.data is not allowed to import dogcls.train' in broken.stdout, broken.stdout


def test_notebooks_are_numbered_in_import_order():
    "Each library notebook's module imports only modules whose notebooks come before it (nbdev's order: names sorted)."
    import ast
    import json
    import re
    module_of = {}
    for nb in sorted((ROOT/'nbs').glob('[0-9]*.ipynb')):
        first = ''.join(json.loads(nb.read_text())['cells'][0]['source'])
        found = re.search(r'#\| default_exp (\S+)', first)
        if found: module_of['dogcls.' + found.group(1)] = nb.stem
    assert len(module_of) >= 25
    late = []
    for module, stem in module_of.items():
        path = ROOT/(module.replace('.', '/') + '.py')
        for node in ast.walk(ast.parse(path.read_text())): # inside functions too
            if isinstance(node, ast.ImportFrom) and node.level:
                target = '.'.join(module.split('.')[:-node.level] + [node.module or ''])
            elif isinstance(node, ast.ImportFrom) and (node.module or '').startswith('dogcls.'): target = node.module
            else: continue
            if target in module_of and module_of[target] >= stem: late.append(f'{stem} imports {target} ({module_of[target]})')
    assert late == []
