"""Start JupyterLab from the project's environment on the notebooks: `make lab` (PORT=8888, IP=127.0.0.1).

The notebooks name the kernel `dogcls`, which `make install` registers inside .venv (`ipykernel install --sys-prefix`),
so they run against this environment whatever other Jupyter the machine has. A port that is taken is not fatal: the
next free one is used, and said. On a remote machine keep IP=127.0.0.1 and forward the port over ssh
(`ssh -L 8888:127.0.0.1:8888 you@host`), then open the URL with the token that JupyterLab prints.
"""
from __future__ import annotations

import argparse
import os
import socket
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KERNEL = 'dogcls'


def port_is_free(ip:str, port:int)->bool:
    with socket.socket(socket.AF_INET6 if ':' in ip else socket.AF_INET) as s:
        try: s.bind((ip, port))
        except OSError: return False
    return True


def choose_port(ip:str, port:int, tries:int=50)->int:
    "`port` if it is free on `ip`, else the next free one of the `tries` after it; none free: an error naming what to pass."
    for candidate in range(port, port + tries):
        if port_is_free(ip, candidate): return candidate
    raise SystemExit(f'ports {port} to {port + tries - 1} on {ip} are all taken: choose another, e.g. `make lab PORT={port + 1000}`')


def kernel_installed()->bool:
    from jupyter_client.kernelspec import KernelSpecManager
    spec = KernelSpecManager().find_kernel_specs().get(KERNEL)
    return spec is not None and Path(spec).resolve().is_relative_to(Path(sys.prefix).resolve())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--port', type=int, default=8888)
    parser.add_argument('--ip', default='127.0.0.1', help='address to listen on (127.0.0.1: this machine only; use ssh -L from elsewhere)')
    args = parser.parse_args(argv)
    if not kernel_installed():
        raise SystemExit(f'the kernel "{KERNEL}" is not installed in {sys.prefix}: run `make install` (it runs '
                         f'`{sys.executable} -m ipykernel install --sys-prefix --name {KERNEL} --display-name {KERNEL}`)')
    port = choose_port(args.ip, args.port)
    if port != args.port: print(f'port {args.port} is taken on {args.ip}; using {port} (or pass one: make lab PORT=...)', flush=True)
    os.environ.pop('MPLBACKEND', None) # the Makefile's Agg (for papermill and tests) would keep the kernels' figures out of the notebook
    jupyter = Path(sys.executable).parent/'jupyter'
    os.execv(jupyter, [str(jupyter), 'lab', '--no-browser', f'--ip={args.ip}', f'--port={port}', '--ServerApp.port_retries=0',
                       f'--ServerApp.root_dir={ROOT}'] + (['--allow-root'] if os.geteuid() == 0 else [])) # root: containers, CI


if __name__ == '__main__': main()
