"""The compatibility matrix: build the wheel, install it into fresh venvs with no dev extras,
and run scripts/smoke.py in each (``make compat``; ``make compat FULL=1`` adds the other Pythons;
``make test`` runs the ``pinned`` entry only, as ``make smoke``).

    python scripts/compat.py                 # pinned, floors, newest (3.11), colab (3.12)
    python scripts/compat.py --only colab --kernel-suite   # ... and the kernel tests on Colab's stack
    python scripts/compat.py --full          # ... and Python 3.10, 3.12, 3.13 (torch from the registry)
    python scripts/compat.py --older         # ... torch older than the floor (2.1.2, 2.4.1): fail today
    python scripts/compat.py --only pinned   # one entry (what make test runs)

Each venv is made new (under build/compat/<run>/), gets the wheel (with its ``[symbolic]`` extra) and
the entry's pins as pip constraints, then ipykernel and jupyter_client for the one kernel run (a
smoke-test tool, not a dependency of the package). pip's own cache and this machine's wheel
directories are used as pip is configured here. Per entry it records the versions that were
installed, the install and smoke times, what pip downloaded and the venv's size; the table is
printed and written to build/compat/<run>/report.md. Exit status 1 if any entry failed.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "build" / "compat"  # one folder per run kind (default, full, pinned), so runs can overlap


def pinned() -> list[str]:
    """constraints.txt without its comments (the dev/CI pins, torch==2.13.0 among them)."""
    lines = (ROOT / "constraints.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


# The declared floors (pyproject.toml), each installed exactly; torch 2.9.1 is a CUDA build from
# the registry (the floor's CPU build is not on PyPI), ipykernel 5.5.6 is Colab's pinned kernel.
FLOORS = [
    "torch==2.9.1", "ipython==7.34.0", "traitlets==5.0.0", "matplotlib==3.6.0", "numpy==1.23.2",
    "sympy==1.13.3", "ipykernel==5.5.6",
    "matplotlib-inline==0.1.7",  # 0.2 calls RcParams._get (matplotlib 3.7+): `%matplotlib inline` fails on 3.6
]  # fmt: skip
# Colab's stack (google-colab pins ipython==7.34.0 and ipykernel==5.5.6; notebook 6.5 wants
# jupyter-client<8; Python 3.12, torch 2.9, NumPy 2.0.2). ipykernel 5.5.6 imports the `imp` module,
# which Python 3.12 removed: from PyPI it cannot start there, so this entry takes the newest ipykernel
# that keeps IPython 7.34, and the `floors` entry runs 5.5.6 on Python 3.11.
COLAB = [
    "torch==2.9.1", "ipython==7.34.0", "traitlets==5.7.1", "matplotlib==3.10.0", "numpy==2.0.2",
    "tornado==6.4.2", "jupyter_client==7.4.9", "ipykernel==6.29.5",
]  # fmt: skip
# Older torch releases than the floor (CUDA builds from the registry; --older, `make compat OLDER=1`),
# with the other floors and the sympy they allow (2.5 and 2.6 pin exactly 1.13.1): what to run to
# lower the torch floor. Both fail today (README: Supported versions).
OLDER = ["ipython==8.10.0", "traitlets==5.0.0", "matplotlib==3.6.0", "numpy==1.23.2", "sympy==1.13.1"]
OLD_TORCH = {"2.1.2": "3.10", "2.4.1": "3.11"}


@dataclass
class Entry:
    name: str
    python: str  # "3.11": found as pyenv's 3.11.*, python3.11 on PATH, or this interpreter
    pins: list[str]
    why: str
    full_only: bool = False
    older: bool = False  # below the declared torch floor: only with --older
    kernel: bool = True
    no_sympy_check: bool = False  # also: uninstall sympy, then --symbolic must say what to install
    suite: bool = False  # also: the repository's kernel tests against this venv's kernel (--kernel-suite)
    # filled in by run()
    ok: bool = False
    versions: str = ""
    install_s: float = 0.0
    smoke_s: float = 0.0
    downloaded_mb: float = 0.0
    venv_mb: float = 0.0
    problem: str = ""
    suite_s: float = 0.0
    suite_result: str = ""
    log: list[str] = field(default_factory=list)


def matrix() -> list[Entry]:
    entries = [
        Entry(
            "pinned",
            "3.11",
            pinned(),
            "constraints.txt, as in CI (torch 2.13.0 from this disk)",
            no_sympy_check=True,
        ),
        Entry(
            "floors",
            "3.11",
            FLOORS,
            "every declared floor, torch 2.9.1 (registry), ipykernel 5.5.6",
            suite=True,
        ),
        Entry("colab", "3.12", COLAB, "Colab's stack: IPython 7.34.0, torch 2.9.1 (registry)", suite=True),
        Entry("newest", "3.11", ["torch==2.14.1"], "newest of everything, torch 2.14.1 from this disk"),
        Entry("py3.10", "3.10", [], "newest of everything (torch from the registry)", full_only=True),
        Entry("py3.12", "3.12", [], "newest of everything (torch from the registry)", full_only=True),
        Entry("py3.13", "3.13", [], "newest of everything (torch from the registry)", full_only=True),
    ]
    for version, python in OLD_TORCH.items():
        why = f"torch {version} with the other floors"
        entries.append(Entry(f"torch{version}", python, [f"torch=={version}", *OLDER], why, older=True))
    return entries


def interpreter(version: str) -> str:
    if f"{sys.version_info.major}.{sys.version_info.minor}" == version:
        return sys.executable
    found = sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/{version}.*/bin/python{version}")))
    if found:
        return found[-1]
    on_path = shutil.which(f"python{version}")
    if on_path:
        return on_path
    raise FileNotFoundError(f"no Python {version} (pyenv or python{version} on PATH)")


def sh(cmd: list[str], log: list[str], **kw) -> subprocess.CompletedProcess:
    log.append("$ " + " ".join(map(str, cmd)))
    done = subprocess.run(cmd, capture_output=True, text=True, **kw)
    log.append(done.stdout + done.stderr)
    return done


def downloaded(pip_output: str) -> float:
    """MB that pip says it downloaded ("Downloading x.whl (797.1 MB)"); cached files are not counted."""
    total = 0.0
    for size, unit in re.findall(r"Downloading \S+ \(([\d.]+) (kB|MB|GB)\)", pip_output):
        total += float(size) * {"kB": 1e-3, "MB": 1.0, "GB": 1e3}[unit]
    return total


def size_mb(path: Path) -> float:
    out = subprocess.run(["du", "-sm", str(path)], capture_output=True, text=True).stdout
    return float(out.split()[0]) if out else 0.0


def build_wheel(dist: Path, log: list[str]) -> Path:
    shutil.rmtree(dist, ignore_errors=True)
    done = sh([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(dist), str(ROOT)], log)
    wheels = sorted(dist.glob("torchgrad_magic-*.whl"))
    if done.returncode or len(wheels) != 1:
        print("\n".join(log))
        raise SystemExit("could not build the wheel")
    return wheels[0]


def run(entry: Entry, wheel: Path, work: Path, keep: bool) -> None:
    venv = work / entry.name
    shutil.rmtree(venv, ignore_errors=True)
    log = entry.log
    py = venv / "bin" / "python"
    pip_out = ""
    try:
        start = time.perf_counter()
        done = sh([interpreter(entry.python), "-m", "venv", str(venv)], log)
        if done.returncode:
            raise RuntimeError("venv failed")
        constraints = venv / "constraints.txt"
        constraints.write_text("\n".join(entry.pins) + "\n")
        pip = [str(py), "-m", "pip", "install", "--progress-bar", "off", "-c", str(constraints)]
        # the entry's pins that are not the package's own dependencies (torch, numpy) are
        # asked for by name too, so an exact pin also applies where nothing else pulls it in
        wanted = [p for p in entry.pins if p.split("==")[0].lower() in TOP]
        done = sh([*pip, f"{wheel}[symbolic]", *wanted], log)
        pip_out += done.stdout + done.stderr
        if done.returncode:
            raise RuntimeError("pip install of the wheel failed")
        if entry.kernel:
            done = sh([*pip, "ipykernel", "jupyter_client"], log)
            pip_out += done.stdout + done.stderr
            if done.returncode:
                log.append("(no kernel run: ipykernel does not install beside these pins)")
                entry.kernel = False
        done = sh([str(py), "-m", "pip", "check"], log)
        if done.returncode:
            raise RuntimeError("pip check: " + done.stdout.strip())
        entry.install_s = time.perf_counter() - start
        entry.downloaded_mb = downloaded(pip_out)

        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as scratch:  # outside the repository: only the wheel is importable
            smoke = Path(scratch) / "smoke.py"
            shutil.copy(ROOT / "scripts" / "smoke.py", smoke)
            flags = [] if entry.kernel else ["--no-kernel"]
            done = sh([str(py), str(smoke), *flags], log, cwd=scratch)
            first = (done.stdout.splitlines() or [""])[0]
            entry.versions = first
            if done.returncode:
                raise RuntimeError("smoke failed: " + _last_failure(done.stdout + done.stderr))
            # the README's one-liner: `ipython --ext=torchgrad_magic -c ...` prints the tutorial's 18
            cell = "get_ipython().run_cell_magic('grad', '--wrt x=3', 'y = 3 * x ** 2')"
            ipython = venv / "bin" / "ipython"
            done = sh([str(ipython), "--ext=torchgrad_magic", "-c", cell], log, cwd=scratch)
            if done.returncode or "dy/dx = 18" not in done.stdout:
                raise RuntimeError("ipython --ext=torchgrad_magic -c ... did not print dy/dx = 18")
            if entry.no_sympy_check:
                sympy_missing(py, scratch, log)
        entry.smoke_s = time.perf_counter() - start
        if entry.suite and entry.kernel and SUITE_ON:
            kernel_suite(entry, py, work)
        entry.ok = True
    except Exception as e:
        entry.problem = str(e)
    finally:
        entry.venv_mb = size_mb(venv)
        if not keep:
            shutil.rmtree(venv, ignore_errors=True)


TOP = {
    "torch",
    "ipython",
    "traitlets",
    "matplotlib",
    "numpy",
    "sympy",
    "ipykernel",
    "jupyter_client",
    "tornado",
}


SUITE = ["tests/test_kernel.py", "tests/test_corpus.py"]  # every test that drives a real kernel


def kernel_suite(entry: Entry, py: Path, work: Path) -> None:
    """The repository's kernel tests (the dev venv's pytest and jupyter_client) against a kernel
    that runs *py*: the wheel, the entry's IPython, ipykernel and torch. Raises when one fails."""
    dev = ROOT / ".venv" / "bin" / "python"
    if not dev.exists():
        raise RuntimeError("--kernel-suite needs the dev venv (make test or make demo makes it)")
    name = f"tgm-compat-{entry.name}"
    spec = work / "kernels" / "kernels" / name
    spec.mkdir(parents=True, exist_ok=True)
    argv = [str(py), "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": name, "language": "python"}))
    expect = ",".join(p for p in entry.pins if p.split("==")[0] in ("torch", "ipython", "ipykernel"))
    env = {**os.environ, "JUPYTER_PATH": str(work / "kernels"), "TGM_KERNEL": name, "MPLBACKEND": "Agg",
           "TGM_KERNEL_VERSIONS": expect}  # fmt: skip
    start = time.perf_counter()
    done = sh([str(dev), "-m", "pytest", "-q", "-n", "2", "-p", "no:cacheprovider", *SUITE], entry.log,
              cwd=ROOT, env=env)  # fmt: skip
    entry.suite_s = time.perf_counter() - start
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    entry.suite_result = next((ln for ln in reversed(lines) if " passed" in ln or " failed" in ln), "")
    if done.returncode:
        raise RuntimeError(f"kernel suite: {entry.suite_result or _last_failure(done.stdout)}")


SUITE_ON = False  # --kernel-suite


def sympy_missing(py: Path, scratch: str, log: list[str]) -> None:
    """Without sympy (the [symbolic] extra), --symbolic says what to install; the rest works."""
    done = sh([str(py), "-m", "pip", "uninstall", "-y", "sympy"], log)
    if done.returncode:
        raise RuntimeError("could not uninstall sympy")
    code = (
        "import torch\n"
        "from torchgrad_magic import grad\n"
        "r = grad('y = 3 * x ** 2', wrt='x=3', symbolic=True)\n"
        "assert r.grads['x'].item() == 18\n"
        "text = str(r)\n"
        "assert 'torchgrad-magic[symbolic]' in text, text\n"
        "print('without sympy: --symbolic says pip install torchgrad-magic[symbolic]')\n"
    )
    done = sh([str(py), "-c", code], log, cwd=scratch)
    if done.returncode:
        raise RuntimeError("without sympy: " + _last_failure(done.stdout + done.stderr))


def _last_failure(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    fails = [line for line in lines if line.startswith("FAIL")]
    return (fails or lines or ["(no output)"])[-1][:300]


def report(entries: list[Entry], wheel: Path, total_s: float) -> str:
    rows = [
        "| entry | Python and versions installed | install | smoke | kernel suite | downloaded | venv | result |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for e in entries:
        result = "pass" if e.ok else f"FAIL: {e.problem}"
        kernel = "" if e.kernel or not e.ok else " (no kernel run)"
        suite = f"{e.suite_result} ({e.suite_s:.0f} s)" if e.suite_result else "–"
        rows.append(
            f"| {e.name} | {e.versions or e.python} | {e.install_s:.0f} s | {e.smoke_s:.0f} s | {suite} "
            f"| {e.downloaded_mb:.0f} MB | {e.venv_mb:.0f} MB | {result}{kernel} |"
        )
    head = f"wheel: {wheel.name}; {len(entries)} venvs in {total_s / 60:.1f} min\n\n"
    return head + "\n".join(rows) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="also Python 3.10, 3.12 and 3.13")
    parser.add_argument("--older", action="store_true", help="torch releases older than the floor")
    parser.add_argument("--only", action="append", help="run only these entries (repeatable)")
    parser.add_argument("--keep", action="store_true", help="keep the venvs under build/compat/<run>/")
    parser.add_argument(
        "--kernel-suite",
        action="store_true",
        help="in the entries that ask for it (colab): also tests/test_kernel.py and tests/test_corpus.py "
        "against that venv's kernel",
    )
    args = parser.parse_args()
    global SUITE_ON
    SUITE_ON = args.kernel_suite
    entries = [e for e in matrix() if (args.full or not e.full_only) and (args.older or not e.older)]
    if args.only:
        entries = [e for e in matrix() if e.name in args.only]
        if len(entries) != len(args.only):
            raise SystemExit(f"unknown entries; known: {', '.join(e.name for e in matrix())}")
    kind = "-".join(args.only) if args.only else "-".join(k for k in ("full", "older") if getattr(args, k))
    work = WORK / (kind or "default")
    work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    log: list[str] = []
    wheel = build_wheel(work / "dist", log)
    print(f"built {wheel.relative_to(ROOT)}", flush=True)
    for entry in entries:
        print(f"[{entry.name}] Python {entry.python}: {entry.why} ...", flush=True)
        run(entry, wheel, work, args.keep)
        logfile = work / f"{entry.name}.log"
        logfile.write_text("\n".join(entry.log))
        status = "pass" if entry.ok else f"FAIL ({entry.problem}; log: {logfile.relative_to(ROOT)})"
        print(
            f"[{entry.name}] {status}: install {entry.install_s:.0f} s, smoke {entry.smoke_s:.0f} s, "
            f"downloaded {entry.downloaded_mb:.0f} MB, venv {entry.venv_mb:.0f} MB\n  {entry.versions}",
            flush=True,
        )
    table = report(entries, wheel, time.perf_counter() - start)
    (work / "report.md").write_text(table)
    (work / "report.json").write_text(
        json.dumps([{k: v for k, v in vars(e).items() if k != "log"} for e in entries], indent=1)
    )
    print("\n" + table)
    failed = [e.name for e in entries if not e.ok]
    print(f"compat: {len(entries) - len(failed)} passed, {len(failed)} failed", flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
