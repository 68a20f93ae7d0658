"""Running the cell once: as a real IPython cell, or as plain Python.

Both keep the value of the cell's last expression (so the magic can hand it
back as ``Out[n]``, as a plain cell would show it) and both leave our own
frames out of the user's traceback.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import linecache
import os
import re
import sys
import threading
import types
from collections.abc import Callable
from typing import Any

from ..messages import t
from .hints import hint_for, with_hint
from .spec import GradError

PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # torchgrad_magic/, all stages
CAPTURE = "__torchgrad_magic_last__"


class CellError(GradError):
    """The cell's own code raised; its traceback was already shown to the user."""

    def __init__(self, error: BaseException, shown: bool = False):
        self.error = error
        self.shown = shown  # IPython already showed it, and the cell's result holds it
        if isinstance(error, KeyboardInterrupt):
            message = t("err.cell_interrupted")
        else:
            message = with_hint(t("err.cell_raised", ename=type(error).__name__), error)
        super().__init__(message)


def without_our_frames(tb: types.TracebackType | None) -> types.TracebackType | None:
    """The traceback *tb* less the frames of this package (the observer and the recorder sit
    between the user's code and PyTorch while a cell runs), and less the frames PyTorch adds only
    because the recorder's torch-function mode is on (``handle_torch_function`` and the first
    entry into the method it re-enters): what a plain cell's traceback shows."""
    frames = []
    while tb is not None:
        frames.append(tb)
        tb = tb.tb_next
    ours = [_is_ours(f) for f in frames]
    drop = set()
    for i in range(len(frames)):
        if not ours[i] or (i > 0 and ours[i - 1]):  # (the first of each run of our frames)
            continue
        after = next((k for k in range(i, len(frames)) if not ours[k]), None)  # where torch resumes
        if i >= 1 and frames[i - 1].tb_frame.f_code.co_name == "handle_torch_function":
            drop.add(i - 1)
            entry = i - 2
            if (
                entry >= 0
                and after is not None
                and frames[entry].tb_frame.f_code is frames[after].tb_frame.f_code
            ):
                drop.add(entry)  # (Tensor.backward entered twice: once to dispatch to the mode)
    kept = [f for k, f in enumerate(frames) if not ours[k] and k not in drop]
    result = None
    for frame in reversed(kept):
        result = types.TracebackType(result, frame.tb_frame, frame.tb_lasti, frame.tb_lineno)
    return result


def _is_ours(tb: types.TracebackType) -> bool:
    return os.path.abspath(tb.tb_frame.f_code.co_filename).startswith(PACKAGE_DIR + os.sep)


class _CaptureLast(ast.NodeTransformer):
    """Turns the cell's last expression ``expr`` into ``CAPTURE(expr)``, which keeps the
    value and returns None (so IPython shows nothing; the magic returns the value). With
    IPython's ``ast_node_interactivity = "last_expr_or_assign"`` (*or_assign*), a last ``y = ...``
    is followed by ``CAPTURE(y)``, as IPython shows ``y`` then. Only the cell's own code: a magic
    in it (``%time expr``) that parses code of its own runs IPython's transformers on it again."""

    def __init__(self, or_assign: bool = False):
        self.or_assign, self.done = or_assign, False

    def visit_Module(self, node: ast.Module) -> ast.Module:
        if self.done:
            return node
        self.done = True
        last = node.body[-1] if node.body else None
        capture = ast.Name(CAPTURE, ast.Load())
        if isinstance(last, ast.Expr):
            node.body[-1] = ast.copy_location(ast.Expr(ast.Call(capture, [last.value], [])), last)
        elif self.or_assign and last is not None and (name := _assigned_name(last)) is not None:
            shown = ast.Expr(ast.Call(capture, [ast.Name(name, ast.Load())], []))
            node.body.append(ast.copy_location(shown, last))
        ast.fix_missing_locations(node)
        return node


def _assigned_name(node: ast.AST | None) -> str | None:
    """The name a last statement assigns, where IPython's "last_expr_or_assign" shows it: ``y = ``,
    ``y += ``, ``y: T = `` with a single plain name as the target."""
    if isinstance(node, ast.Assign) and len(node.targets) == 1:
        target: ast.AST = node.targets[0]
    elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
        target = node.target
    else:
        return None
    return target.id if isinstance(target, ast.Name) else None


class PlainRunner:
    """Runs code with ``exec`` in a dict; the last expression's value is kept."""

    def __init__(self, namespace: dict[str, Any]):
        self.namespace = namespace
        self.namespace.setdefault("__builtins__", __builtins__)

    def python_source(self, cell: str) -> str:
        return cell

    def run(self, cell: str, tree: ast.Module | None = None) -> Any:
        """Run *cell*; the value of its last expression, if it ends with one (*tree* is not used:
        the cell's tree is taken apart here)."""
        filename = "<grad-cell>"
        tree = ast.parse(cell, filename)
        last = None
        tail = tree.body[-1] if tree.body else None
        if isinstance(tail, ast.Expr):
            tree.body.pop()
            last = ast.Expression(tail.value)
        lines = cell.splitlines(keepends=True)
        linecache.cache[filename] = (len(cell), None, lines, filename)  # one entry, reused
        try:
            exec(compile(tree, filename, "exec"), self.namespace)
            return None if last is None else eval(compile(last, filename, "eval"), self.namespace)
        except Exception as e:
            hint = hint_for(e)
            if hint and hasattr(e, "add_note"):
                e.add_note(hint)
            elif hint:  # Python 3.10 has no add_note; PEP 678's __notes__ is what IPython shows
                with contextlib.suppress(AttributeError, TypeError):
                    e.__notes__ = [*getattr(e, "__notes__", ()), hint]  # type: ignore[attr-defined]
            raise e.with_traceback(without_our_frames(e.__traceback__)) from e.__cause__


class ShellRunner:
    """Runs the cell through ``shell.run_cell`` so magics, ``await`` and tracebacks
    work as usual; the last expression's value is caught by an AST transformer
    (IPython's public ``ast_transformers``) instead of being shown."""

    def __init__(self, shell: Any):
        self.shell = shell
        self.namespace = shell.user_ns
        self.thread_context: Callable[[], Any] = contextlib.nullcontext  # per-thread state (see _InThread)

    def python_source(self, cell: str) -> str:
        """The cell as plain Python. Plain Python is left as it is (IPython's
        transforms only change what Python cannot parse: %magics, !commands, ?)."""
        try:
            ast.parse(cell)
            return cell
        except SyntaxError:
            return self.shell.transform_cell(cell)

    def run(self, cell: str, tree: ast.Module | None = None) -> Any:
        """Run *cell* (its syntax tree *tree*, where it is plain Python) as a real IPython cell;
        the value of its last expression, if it ends with one."""
        shell = self.shell
        caught: list[Any] = []
        had = CAPTURE in self.namespace
        self.namespace[CAPTURE] = caught.append
        or_assign = getattr(shell, "ast_node_interactivity", None) == "last_expr_or_assign"
        transformer = _CaptureLast(or_assign)
        if _may_show_a_value(tree, or_assign) or shell.ast_transformers or shell.input_transformers_post:
            shell.ast_transformers.append(transformer)  # (the user's transformers may make one; else
            # none is added, and IPython skips its transform_ast)
        saved = shell.custom_exceptions, shell.CustomTB
        shell.set_custom_exc((BaseException,), _keep_user_traceback)
        loop_runner = shell.loop_runner
        outer = shell.displayhook.exec_result  # the %%grad cell's own result, which a nested run resets
        if _event_loop_running():  # in a kernel: a cell with top-level await needs a loop of its own
            shell.loop_runner = _InThread(self.thread_context)
        # the cell's code is named after the %%grad cell's number (IPython 9 has already counted the
        # next one while a cell runs): tracebacks say In[n], as without %%grad
        count = shell.execution_count
        number = _outer_cell_number()  # IPython's own name of the %%grad cell: its number is the one
        if number is None:  # (ipykernel 6+ names cells by a hash: then the cell's execution count)
            number = getattr(outer, "execution_count", None)
        if isinstance(number, int) and number > 0:
            shell.execution_count = number
        try:
            outcome = shell.run_cell(_as_typed(cell, outer), store_history=False)
        finally:
            shell.execution_count = count
            shell.displayhook.exec_result = outer
            shell.loop_runner = loop_runner
            shell.custom_exceptions, shell.CustomTB = saved
            if transformer in shell.ast_transformers:
                shell.ast_transformers.remove(transformer)
            if not had:
                self.namespace.pop(CAPTURE, None)
        error = outcome.error_before_exec or outcome.error_in_exec
        if isinstance(error, SyntaxError) and not hasattr(error, "_render_traceback_"):
            # IPython showed it, as for a plain cell ('return' outside a function): the %%grad cell
            # fails with it (the kernel's reply says so) and nothing more is shown
            if outer is not None:
                outer.error_in_exec = error
            raise CellError(error, shown=True)
        if isinstance(error, SyntaxError):  # IPython shows a raised SyntaxError with every frame
            error = _as_shown(error, error._render_traceback_())  # type: ignore[attr-defined]
        if error is not None:
            raise CellError(error)
        return caught[-1] if caught else None


def _may_show_a_value(tree: ast.Module | None, or_assign: bool) -> bool:
    """Whether a cell whose syntax tree is *tree* (None: not plain Python, IPython transforms it)
    may end with a value IPython would show (the magic hands it back as the cell's): a last
    expression, or with *or_assign* (see :class:`_CaptureLast`) a last assignment to a name."""
    if tree is None:
        return True
    last = tree.body[-1] if tree.body else None
    return isinstance(last, ast.Expr) or (or_assign and _assigned_name(last) is not None)


def _as_typed(cell: str, outer: Any) -> str:
    """The cell's code as the user typed it below the %%grad line: IPython hands a cell magic its
    body with a newline added, and ipykernel names a cell's code after its text (a hash), so a
    SyntaxError or a traceback names the file a plain run of the same cell would."""
    raw = getattr(getattr(outer, "info", None), "raw_cell", None)
    if isinstance(raw, str) and raw.startswith("%%grad") and "\n" in raw:
        body = raw.split("\n", 1)[1]
        if cell in (body, body + "\n"):
            return body
    return cell


_INPUT_NAME = re.compile(r"<ipython-input-(\d+)-[0-9a-f]+>")


def _outer_cell_number() -> int | None:
    """N of ``<ipython-input-N-hash>``, the name IPython gave the %%grad cell's code (found among
    the frames above; None where the front end names cells otherwise, as ipykernel 6+ does)."""
    frame: types.FrameType | None = sys._getframe(1)
    for _ in range(64):
        if frame is None:
            return None
        found = _INPUT_NAME.fullmatch(frame.f_code.co_filename)
        if found:
            return int(found.group(1))
        frame = frame.f_back
    return None


def _event_loop_running() -> bool:
    try:
        asyncio.get_running_loop()
        return True
    except RuntimeError:
        return False


class _InThread:
    """IPython's loop runner for a cell with top-level ``await`` while the kernel's own
    event loop is busy running the %%grad cell: the cell's coroutine runs on a fresh
    loop in a helper thread, with the caller's grad mode (thread-local in PyTorch),
    and the grad mode the cell leaves comes back with it."""

    def __init__(self, context: Callable[[], Any]):
        self.context = context

    def __call__(self, coro: Any) -> Any:
        import torch

        box: dict[str, Any] = {"grad": torch.is_grad_enabled()}

        def work() -> None:
            torch.set_grad_enabled(box["grad"])
            try:
                with self.context():
                    box["value"] = asyncio.run(coro)
            except BaseException as e:  # handed to the caller's thread
                box["error"] = e
            box["grad"] = torch.is_grad_enabled()

        thread = threading.Thread(target=work, name="torchgrad-magic-await", daemon=True)
        thread.start()
        thread.join()
        torch.set_grad_enabled(box["grad"])
        if "error" in box:
            raise box["error"]
        return box.get("value")


def _as_shown(error: SyntaxError, stb: list[str]) -> Exception:
    """The cell's SyntaxError as the magic raises it: IPython shows *stb* (the cell's line and a
    caret, as for a plain cell; nothing when IPython already showed it, as it does for 'return'
    outside a function). Of an exception type named as the error (the kernel's reply says
    SyntaxError), but not a SyntaxError: IPython renders those itself, with our frames."""
    kind = type(type(error).__name__, (Exception,), {"__module__": "builtins"})
    shown = kind(str(error))
    shown._render_traceback_ = lambda: stb
    return shown


def _keep_user_traceback(
    shell: Any, etype: type, value: BaseException, tb: Any, tb_offset: Any = None
) -> None:
    """Instead of showing the cell's error now, attach IPython's usual traceback of it
    (without this package's frames, with a plain-language hint when there is one) to
    the exception: the magic raises it again, and IPython shows it once, as the
    cell's own error, as a plain cell would."""
    if isinstance(value, SyntaxError):  # the cell's line and a caret, as IPython shows a plain cell's
        stb = shell.SyntaxTB.structured_traceback(etype, value, [])
        with contextlib.suppress(AttributeError, TypeError):
            value._render_traceback_ = lambda: stb  # type: ignore[attr-defined]
        return
    tb = without_our_frames(tb)
    if tb is None:
        return
    stb = shell.InteractiveTB.structured_traceback(etype, value, tb, tb_offset=tb_offset)
    hint = hint_for(value)
    if hint:
        stb = [*stb, hint]
    try:
        value._render_traceback_ = lambda: stb  # type: ignore[attr-defined]
    except (AttributeError, TypeError):  # an exception without a __dict__: shown as IPython would
        shell.showtraceback((etype, value, tb), tb_offset=tb_offset)
