"""The contract of ``%%grad``: on top of any cell it changes nothing but adds a report.

Every cell of ``tests/corpus/*.py`` (real cells from public autograd tutorials and docs,
in their order, separated by ``# %%`` lines) runs plain in one Jupyter kernel and as
``%%grad`` + cell in a second kernel. After each cell both kernels must agree on:

- what the cell printed (stdout, stderr), its ``Out[]`` value and its error, if any
  (never a ``UsageError`` from ``%%grad`` where the plain cell runs);
- every ``display_data`` that is not the report (the report's displays carry
  ``metadata["torchgrad_magic"]``);
- a fingerprint of the kernel: every user variable (tensors with their values, grads,
  ``grad_fn``, ``is_leaf``, ``requires_grad``; modules with parameters, grads and buffers;
  optimizers' state; containers; ...), the RNG states of torch, ``random`` and numpy,
  grad mode and the default dtype.

The autograd graph is checked by the tutorials themselves: a later cell's ``backward()``
must still work under ``%%grad``.

The kernel machinery here (:class:`Session`, :class:`Pair`, :func:`compare`,
:func:`diff_fingerprints`) is shared with ``test_side_effects.py``.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import difflib
import hashlib
import json
import os
import re
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import Kernel

HERE = Path(__file__).resolve().parent
CORPUS = sorted((HERE / "corpus").glob("*.py"))
CELL_TIMEOUT = 120  # seconds; every corpus cell runs in well under one second plain
# TGM_HARNESS_SELF_CHECK=1: kernel B runs the cells without %%grad, which must always pass
# (a check of this harness and of the corpus, not of the magic).
SELF_CHECK = os.environ.get("TGM_HARNESS_SELF_CHECK") == "1"

# ---------------------------------------------------------------------------
# what runs inside both kernels
# ---------------------------------------------------------------------------
FINGERPRINT = r'''
def _tgm_fingerprint():
    """The kernel's state as JSON: user variables, RNG states, torch's global modes."""
    import hashlib, json, random, sys, types

    import torch

    def digest(data):
        return hashlib.sha1(data).hexdigest()[:16]

    def values(t):  # a hash of the exact bytes of a tensor's values
        try:
            t = t.detach()
            if t.layout != torch.strided:
                t = t.to_dense()
            t = t.resolve_conj().resolve_neg().cpu().contiguous().reshape(-1)
            if t.is_complex():
                t = torch.view_as_real(t).reshape(-1)
            return digest(t.view(torch.uint8).numpy().tobytes())
        except Exception as e:
            return f"<unhashable: {type(e).__name__}>"

    def grad_of(t):
        g = t.grad
        if g is None:
            return None
        return [str(g.dtype), list(g.shape), g.requires_grad, values(g)]

    def tensor(t):
        d = {
            "type": type(t).__name__, "dtype": str(t.dtype), "shape": list(t.shape),
            "device": str(t.device), "requires_grad": t.requires_grad, "is_leaf": t.is_leaf,
            "grad_fn": None if t.grad_fn is None else type(t.grad_fn).__name__, "values": values(t),
        }
        if t.is_leaf or t.retains_grad:  # never read .grad of other non-leaves: it warns
            d["grad"] = grad_of(t)
        return d

    def module(m):
        return {
            "module": type(m).__name__,
            "training": [sub.training for sub in m.modules()],
            "parameters": {n: [p.requires_grad, values(p), grad_of(p)] for n, p in m.named_parameters()},
            "buffers": {n: values(b) for n, b in m.named_buffers()},
        }

    np = sys.modules.get("numpy")

    def describe(o, depth=0):
        if depth > 8:
            return f"<deep {type(o).__name__}>"
        if isinstance(o, torch.Tensor):
            return tensor(o)
        if isinstance(o, torch.nn.Module):
            return module(o)
        if isinstance(o, torch.optim.Optimizer):
            return {"optimizer": type(o).__name__, "state_dict": describe(o.state_dict(), depth + 1)}
        if o is None or isinstance(o, (bool, int, float, complex, str, bytes)):
            return repr(o)
        if isinstance(o, (torch.dtype, torch.device, torch.Size)):
            return repr(o)
        if np is not None and isinstance(o, np.ndarray):
            return ["ndarray", str(o.dtype), list(o.shape), digest(np.ascontiguousarray(o).tobytes())]
        if np is not None and isinstance(o, np.generic):
            return repr(o)
        if isinstance(o, (list, tuple)):
            return [type(o).__name__] + [describe(x, depth + 1) for x in o]
        if isinstance(o, dict):
            return [type(o).__name__] + [[describe(k, depth + 1), describe(v, depth + 1)] for k, v in o.items()]
        if isinstance(o, (set, frozenset)):
            return [type(o).__name__] + sorted(json.dumps(describe(x, depth + 1)) for x in o)
        if isinstance(o, type):
            return ["class", o.__qualname__]
        if callable(o):
            return ["callable", getattr(o, "__qualname__", None) or getattr(o, "__name__", None) or type(o).__name__]
        return ["object", type(o).__module__ + "." + type(o).__qualname__]

    skip = {"In", "Out", "get_ipython", "exit", "quit"}
    user = {}
    for name, value in list(get_ipython().user_ns.items()):
        if name.startswith("_") or name in skip or isinstance(value, types.ModuleType):
            continue
        if (type(value).__module__ or "").startswith("torchgrad_magic"):
            continue
        try:
            user[name] = describe(value)
        except Exception as e:
            user[name] = f"<cannot describe: {type(e).__name__}: {e}>"

    state = {
        "torch.get_rng_state()": digest(torch.get_rng_state().numpy().tobytes()),
        "torch.initial_seed()": torch.initial_seed(),
        "random.getstate()": digest(repr(random.getstate()).encode()),
        "torch.is_grad_enabled()": torch.is_grad_enabled(),
        "torch.is_inference_mode_enabled()": torch.is_inference_mode_enabled(),
        "torch.is_anomaly_enabled()": torch.is_anomaly_enabled(),
        "torch.get_default_dtype()": str(torch.get_default_dtype()),
        "torch.get_default_device()": str(torch.get_default_device()),
    }
    if np is not None:
        s = np.random.get_state()
        state["np.random.get_state()"] = digest(repr((s[0], s[1].tobytes(), *s[2:])).encode())
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is not None:
        state["open matplotlib figures"] = len(plt.get_fignums())
    return json.dumps({"variables": user, "state": state}, sort_keys=True)
'''

# torch's own default seed differs between processes: seed it too (without binding a name)
SETUP = (
    "import random, numpy as np; random.seed(0); np.random.seed(0)\n"
    "__import__('torch').manual_seed(0)\n"
    "%matplotlib inline\n" + FINGERPRINT
)
LOAD = "%load_ext torchgrad_magic"


# ---------------------------------------------------------------------------
# one kernel
# ---------------------------------------------------------------------------
@dataclass
class Outcome:
    """What one execution showed."""

    status: str  # "ok", "error", "aborted" or "timeout"
    ename: str = ""
    evalue: str = ""
    stdout: str = ""
    stderr: str = ""
    results: list[dict] = field(default_factory=list)  # execute_result contents
    displays: list[dict] = field(default_factory=list)  # display_data contents


class Session:
    """A Jupyter kernel with execute(), evaluate() and fingerprint()."""

    def __init__(self, magic: bool):
        self.magic = magic
        self.kernel = Kernel()
        self.kc = self.kernel.kc
        self.setup()

    def setup(self, extra: str = "") -> None:
        for code in (
            SETUP + extra,
            LOAD if self.magic else "pass",
        ):  # (the same cell count: IPython 7 names cells by it)
            if code:
                out = self.execute(code)
                assert out.status == "ok", f"set-up failed: {out.ename}: {out.evalue}\n{out.stderr}"
        self.fingerprint()  # imports torch: part of the warm-up

    def execute(self, code: str, *, store_history: bool = True, timeout: float = CELL_TIMEOUT) -> Outcome:
        out = Outcome("ok")

        def hook(msg: dict) -> None:
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                if content["name"] == "stderr":
                    out.stderr += content["text"]
                else:
                    out.stdout += content["text"]
            elif kind == "execute_result":
                out.results.append(content)
            elif kind in ("display_data", "update_display_data"):
                out.displays.append(content)

        try:
            reply = self.kc.execute_interactive(
                code, store_history=store_history, output_hook=hook, timeout=timeout
            )
        except TimeoutError:
            out.status = "timeout"
            return out
        content = reply["content"]
        out.status = content["status"]
        out.ename, out.evalue = content.get("ename", ""), content.get("evalue", "")
        return out

    def evaluate(self, expr: str) -> str:
        """``repr``-like text of *expr*, evaluated silently (no history, no Out, no outputs)."""
        reply = self.kc.execute_interactive(
            "", silent=True, store_history=False, user_expressions={"v": expr}, timeout=CELL_TIMEOUT
        )
        value = reply["content"]["user_expressions"]["v"]
        if value["status"] != "ok":
            raise AssertionError(f"evaluating {expr!r} failed: {value['ename']}: {value['evalue']}")
        return value["data"]["text/plain"]

    def value(self, expr: str) -> Any:
        """A Python literal (number, list, str, ...) computed in the kernel."""
        return ast.literal_eval(self.evaluate(expr))

    def run_silently(self, code: str) -> None:
        """Run *code* without a trace in the history or outputs (for ``_tgm_`` helpers)."""
        reply = self.kc.execute_interactive(code, silent=True, store_history=False, timeout=CELL_TIMEOUT)
        content = reply["content"]
        assert content["status"] == "ok", f"{code!r} failed: {content.get('ename')}: {content.get('evalue')}"

    def fingerprint(self) -> dict:
        return json.loads(self.value("_tgm_fingerprint()"))

    def close(self) -> None:
        self.kernel.close()


def close_this_threads_loop() -> None:
    """jupyter_client's blocking calls make an event loop in each thread that calls them and leave
    it open. A thread of ours closes its own before it ends: else the garbage collector closes it at
    any moment, and pytest counts what that prints as an error of whichever test is running."""
    try:
        loop = asyncio.get_event_loop_policy().get_event_loop()
    except RuntimeError:  # no loop in this thread
        return
    if not loop.is_running() and not loop.is_closed():
        loop.close()


class Pair:
    """Kernel A runs cells plain, kernel B runs them under ``%%grad``."""

    def __init__(self):
        sessions: dict[bool, Session] = {}
        errors: list[BaseException] = []

        def start(magic: bool) -> None:
            try:
                for attempt in range(3):  # (two kernels start at once: jupyter_client may give both
                    try:  # the same free port, and one dies with "Address already in use")
                        sessions[magic] = Session(magic)
                        break
                    except RuntimeError as e:
                        if attempt == 2 or "Kernel died" not in str(e):
                            raise
            except BaseException as e:
                errors.append(e)
            finally:
                close_this_threads_loop()

        threads = [threading.Thread(target=start, args=(m,)) for m in (False, True)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            for s in sessions.values():
                s.close()
            raise errors[0]
        self.a, self.b = sessions[False], sessions[True]

    def run(self, cell: str, line: str = "") -> tuple[Outcome, Outcome]:
        """*cell* plain in A and under ``%%grad line`` in B (at the same time)."""
        magic_line = f"%%grad {line}".rstrip()
        if SELF_CHECK:  # the harness itself: two plain kernels must always agree
            return self.run_plain(cell)
        return self.both(lambda s: s.execute(cell if s is self.a else f"{magic_line}\n{cell}"))

    def run_plain(self, cell: str) -> tuple[Outcome, Outcome]:
        return self.both(lambda s: s.execute(cell))

    def fingerprints(self) -> tuple[dict, dict]:
        return self.both(Session.fingerprint)

    def both(self, action):
        """``(action(a), action(b))``, the two kernels working in parallel."""
        box: dict[str, Any] = {}

        def in_b() -> None:
            try:
                box["b"] = action(self.b)
            except BaseException as e:
                box["error"] = e
            finally:
                close_this_threads_loop()

        thread = threading.Thread(target=in_b)
        thread.start()
        try:
            result_a = action(self.a)
        finally:
            thread.join()
        if "error" in box:
            raise box["error"]
        return result_a, box["b"]

    def close(self) -> None:
        self.a.close()
        self.b.close()


# ---------------------------------------------------------------------------
# comparing what two kernels showed
# ---------------------------------------------------------------------------
ADDRESS = re.compile(r"0x[0-9a-fA-F]{4,}")
CELL_FILE = re.compile(r"\S*ipykernel_\d+[/\\]-?\d+\.py")


def normalise(text: str) -> str:
    """Memory addresses and the kernel's per-process cell file names differ between any two kernels."""
    return CELL_FILE.sub("<cell>", ADDRESS.sub("0x…", text))


def is_ours(display: dict) -> bool:
    """The report: ``metadata["torchgrad_magic"]`` (or, for older engines, its HTML class)."""
    if "torchgrad_magic" in (display.get("metadata") or {}):
        return True
    return "torchgrad-magic" in str(display.get("data", {}).get("text/html", ""))


def display_summary(display: dict) -> dict:
    data = display.get("data", {})
    summary: dict[str, Any] = {"mime": sorted(data)}
    if "text/plain" in data:
        summary["text/plain"] = normalise(str(data["text/plain"]))
    if "image/png" in data:
        summary["image/png"] = data["image/png"]
    return summary


def text_diff(a: str, b: str, limit: int = 12) -> str:
    lines = list(difflib.unified_diff(a.splitlines(), b.splitlines(), "plain", "%%grad", lineterm="", n=1))
    if len(lines) > limit:
        lines = [*lines[:limit], f"... ({len(lines) - limit} more diff lines)"]
    return "\n".join("      " + line for line in lines)


def compare(a: Outcome, b: Outcome) -> list[str]:
    """What the plain run (a) and the %%grad run (b) showed differently; [] if nothing."""
    problems = []
    if b.status == "timeout":
        return [f"%%grad did not finish within {CELL_TIMEOUT} s"]
    if (a.status, a.ename, a.evalue) != (b.status, b.ename, b.evalue):
        plain = "ran without error" if a.status == "ok" else f"raised {a.ename}: {a.evalue[:300]}"
        magic = "ran without error" if b.status == "ok" else f"raised {b.ename}: {b.evalue[:300]}"
        if b.ename == "UsageError":
            magic += "  <- %%grad refused a cell that runs plain"
        problems.append(f"error: plain {plain}; %%grad {magic}")
    for name, x, y in (
        ("stdout", normalise(a.stdout), normalise(b.stdout)),
        ("stderr", normalise(a.stderr), normalise(b.stderr)),  # warnings too: PyTorch's non-leaf .grad one
    ):
        if x != y:
            problems.append(f"{name} differs:\n{text_diff(x, y)}")
    out_a = [normalise(r["data"].get("text/plain", "")) for r in a.results]
    out_b = [normalise(r["data"].get("text/plain", "")) for r in b.results]
    if out_a != out_b:
        problems.append(f"Out[] differs: plain {_short(out_a)}; %%grad {_short(out_b)}")
    shown_a = [display_summary(d) for d in a.displays if not is_ours(d)]
    shown_b = [display_summary(d) for d in b.displays if not is_ours(d)]
    if shown_a != shown_b:
        problems.append(
            f"displays (other than the report) differ: plain {_displays(shown_a)}; %%grad {_displays(shown_b)}"
        )
    return problems


def _displays(shown: list[dict]) -> str:
    items = []
    for s in shown:
        text = f"{'+'.join(s['mime'])}"
        if "image/png" in s:
            digest = hashlib.sha1(s["image/png"].encode()).hexdigest()[:8]
            text += f" ({len(s['image/png']) * 3 // 4} bytes of PNG, sha1 {digest})"
        elif "text/plain" in s:
            text += f" {_short(s['text/plain'], 80)}"
        items.append(text)
    return f"{len(shown)} [{', '.join(items)}]"


def _short(value: Any, width: int = 300) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= width else text[: width - 1] + "…"


def diff_fingerprints(a: dict, b: dict, ignore: tuple[str, ...] = ()) -> list[str]:
    """Readable differences between two kernels' fingerprints, naming each variable."""
    problems = []
    va, vb = a["variables"], b["variables"]
    for name in sorted(set(va) | set(vb)):
        if name in ignore:
            continue
        if name not in vb:
            problems.append(f"variable {name!r} exists only in the plain kernel: {_short(va[name], 200)}")
        elif name not in va:
            problems.append(f"variable {name!r} exists only in the %%grad kernel: {_short(vb[name], 200)}")
        elif va[name] != vb[name]:
            problems.append(f"variable {name!r} differs: {_where(va[name], vb[name])}")
    for key in sorted(set(a["state"]) | set(b["state"])):
        x, y = a["state"].get(key), b["state"].get(key)
        if x != y:
            problems.append(f"state {key} differs: plain {x!r}; %%grad {y!r}")
    return problems


def _where(x: Any, y: Any, path: str = "") -> str:
    """The first place two descriptions differ, e.g. ``["grad"]: plain None; %%grad [...]``."""
    if isinstance(x, dict) and isinstance(y, dict):
        for key in [*x, *(k for k in y if k not in x)]:
            if x.get(key, "<missing>") != y.get(key, "<missing>"):
                return _where(x.get(key, "<missing>"), y.get(key, "<missing>"), f"{path}[{key!r}]")
    if isinstance(x, list) and isinstance(y, list) and len(x) == len(y):
        for i, (p, q) in enumerate(zip(x, y, strict=True)):
            if p != q:
                return _where(p, q, f"{path}[{i}]")
    return f"{path or 'value'}: plain {_short(x, 200)}; %%grad {_short(y, 200)}"


# ---------------------------------------------------------------------------
# the corpus
# ---------------------------------------------------------------------------
CELL_SEPARATOR = re.compile(r"^# %%[^\n]*\n", re.MULTILINE)


def read_cells(path: Path) -> list[str]:
    """The cells of a corpus file: the text between ``# %%`` lines (the header is not a cell)."""
    chunks = CELL_SEPARATOR.split(path.read_text(encoding="utf-8"))[1:]
    return [chunk.strip("\n") for chunk in chunks if chunk.strip()]


def cell_title(path: Path, index: int, cell: str, lines: int = 3) -> str:
    head = cell.splitlines()[:lines]
    more = " ..." if len(cell.splitlines()) > lines else ""
    return f"{path.name} cell {index}: " + " | ".join(line.strip() for line in head) + more


class PairPool:
    """Starts (and sets up) the kernel pair of the next corpus file while this one runs."""

    def __init__(self, paths: list[Path], ahead: int):
        self.paths, self.ahead = paths, ahead
        self.executor = ThreadPoolExecutor(max_workers=2)
        self.futures: dict[Path, Future] = {}

    def _submit(self, path: Path) -> None:
        if path not in self.futures:
            self.futures[path] = self.executor.submit(Pair)

    def get(self, path: Path) -> Pair:
        self._submit(path)
        i = self.paths.index(path)
        for upcoming in self.paths[i + 1 : i + 1 + self.ahead]:
            self._submit(upcoming)
        return self.futures.pop(path).result()

    def close(self) -> None:
        for future in self.futures.values():
            if not future.cancel():
                with contextlib.suppress(Exception):
                    future.result().close()
        self.executor.shutdown(wait=True)


@pytest.fixture(scope="module")
def pairs():
    # under pytest-xdist another process takes other files: start only what is asked for
    pool = PairPool(CORPUS, ahead=0 if os.environ.get("PYTEST_XDIST_WORKER") else 1)
    yield pool
    pool.close()


def test_corpus_is_large_enough():
    cells = sum(len(read_cells(p)) for p in CORPUS)
    assert len(CORPUS) >= 8 and cells >= 60, (len(CORPUS), cells)
    for path in CORPUS:
        header = path.read_text(encoding="utf-8").split("# %%")[0]
        assert "Source" in header and ("/" in header), f"{path.name}: the header names no source"


@pytest.mark.parametrize("path", CORPUS, ids=[p.stem for p in CORPUS])
def test_corpus_cell_by_cell(path: Path, pairs: PairPool):
    """Each cell plain in kernel A and under %%grad in kernel B, in the tutorial's order."""
    cells = read_cells(path)
    pair = pairs.get(path)
    failures: list[tuple[str, list[str]]] = []
    try:
        setup = diff_fingerprints(*pair.fingerprints())
        assert not setup, "the kernels differ after the set-up cell:\n" + "\n".join(setup)
        for index, cell in enumerate(cells, start=1):
            plain, magic = pair.run(cell)
            problems = compare(plain, magic)
            if magic.status != "timeout":
                problems += diff_fingerprints(*pair.fingerprints())
            if problems:
                failures.append((cell_title(path, index, cell), problems))
            if magic.status == "timeout":
                break
    finally:
        pair.close()
    if failures:
        (title, problems), rest = failures[0], failures[1:]
        message = [f"{len(failures)} of {len(cells)} cells differ under %%grad. First: {title}"]
        message += [f"  - {p}" for p in problems[:12]]
        if len(problems) > 12:
            message.append(f"  - ... {len(problems) - 12} more")
        if rest:
            message.append("Later cells (may follow from the first):")
            message += [f"  {t}: {ps[0].splitlines()[0]}" for t, ps in rest[:15]]
        pytest.fail("\n".join(message), pytrace=False)
