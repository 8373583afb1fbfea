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
    assert kept.returncode == 0 and 'Contracts: 2 kept, 0 broken.' in kept.stdout, kept.stdout + kept.stderr
    data = tmp_path/'dogcls'/'data.py'
    data.write_text(data.read_text() + '\n\ndef _trained():\n    from dogcls.train import train_kfold # up from data: not allowed\n    return train_kfold\n')
    broken = lint_imports(tmp_path)
    assert broken.returncode == 1 and 'dogcls.data is not allowed to import dogcls.train' in broken.stdout, broken.stdout
