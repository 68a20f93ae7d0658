"""The ``%%grad`` cell magic: declared arguments, then one call into the engine.

This module must stay light: loading the extension imports neither torch nor
matplotlib. The engine (and torch) is imported the first time a cell runs.

Defaults are traitlets on :class:`GradMagic`, so ``%config GradMagic`` lists
them, ``%config GradMagic.language = 'zh'`` sets one, and ``ipython_config.py``
can set them with ``c.GradMagic.digits = 6``.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import tokenize
import types
from collections.abc import Callable
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments
from traitlets import Bool, CaselessStrEnum, Enum, Int, observe

from .capture.spec import GradError, check_name, split_line
from .messages import t, using

DTYPES = ["float16", "bfloat16", "float32", "float64"]
METADATA = {"torchgrad_magic": {"version": 1}}  # on every output %%grad adds, so tools can tell them apart


def _choice(flag: str, choices: list[str]) -> Callable[[str], str]:
    """An argparse ``type`` that raises our own error (argparse's English never reaches users)."""

    def check(value: str) -> str:
        if value not in choices:
            raise GradError(
                t("err.invalid_choice", flag=flag, value=repr(value), choices=", ".join(map(repr, choices)))
            )
        return value

    return check


def _graph_kind(value: str) -> str:
    """``--graph``, ``--graph full``, ``--graph unfold`` (repeated ops drawn one by one, not
    folded into one box × N) or ``--graph 2`` (how deep a model's modules unfold)."""
    if value in ("simple", "full", "unfold") or (value.isdigit() and int(value) <= 20):
        return value
    raise GradError(t("graph.bad", value=value))


def _integer(flag: str) -> Callable[[str], int]:
    def check(value: str) -> int:
        try:
            return int(value)
        except ValueError:
            raise GradError(t("err.invalid_value", flag=flag, value=repr(value), kind="int")) from None

    return check


def _help(dest: str) -> str:
    """A flag's help in English (what the parser is built with; see :func:`document`)."""
    with using("en"):
        return t(f"help.{dest}")


@magics_class
class GradMagic(Magics):
    """Show PyTorch autograd at work: ``%%grad --wrt x=3``."""

    language = CaselessStrEnum(
        ["auto", "en", "zh"],
        default_value="auto",
        help="Language of the report, notes and errors: 'en', 'zh', or 'auto' (from the locale: zh* gives "
        "Chinese). A cell's --lang wins.",
    ).tag(config=True)
    dtype = Enum(
        DTYPES,
        default_value=None,
        allow_none=True,
        help="dtype of --wrt leaves when a cell gives no --dtype (None: PyTorch's default dtype).",
    ).tag(config=True)
    digits = Int(4, min=1, max=17, help="Significant digits of the numbers in the report.").tag(config=True)
    max_items = Int(
        6, min=2, help="How many values of a long tensor the report shows (first and last ones)."
    ).tag(config=True)
    plot = Bool(
        False, help="Draw the function and its derivative under every cell (a cell's --no-plot wins)."
    ).tag(config=True)

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        document(self.language)

    @observe("language")
    def _language_changed(self, change) -> None:
        document(change.new)

    @magic_arguments("%grad")  # shown as %%grad in the help
    @argument("--wrt", nargs="+", action="extend", metavar="SPEC", help=_help("wrt"))
    @argument("--of", metavar="NAME", help=_help("of"))
    @argument("--retain-grad", action="store_true", help=_help("retain_grad"))
    @argument(
        "--dtype", type=_choice("--dtype", DTYPES), metavar="{" + ",".join(DTYPES) + "}", help=_help("dtype")
    )
    @argument("--device", metavar="DEV", help=_help("device"))
    @argument("--plot", action=argparse.BooleanOptionalAction, help=_help("plot"))
    @argument("--range", metavar="A:B", help=_help("range"))
    @argument("--save", metavar="FILE", help=_help("save"))
    @argument("--explore", nargs="?", const=True, metavar="NAME=A:B", help=_help("explore"))
    @argument("--order", type=_integer("--order"), default=1, metavar="N", help=_help("order"))
    @argument("--hessian", action="store_true", help=_help("hessian"))
    @argument("--jacobian", action="store_true", help=_help("jacobian"))
    @argument("--check", action="store_true", help=_help("check"))
    @argument("--symbolic", action="store_true", help=_help("symbolic"))
    @argument("--expect", nargs="+", metavar="VALUE", help=_help("expect"))
    @argument(
        "--graph",
        nargs="?",
        const="simple",
        type=_graph_kind,
        metavar="{simple,full,unfold,DEPTH}",
        help=_help("graph"),
    )
    @argument("--steps", action="store_true", help=_help("steps"))
    @argument("--quiz", action="store_true", help=_help("quiz"))
    @argument("--times-input", action="store_true", help=_help("times_input"))
    @argument("--lang", type=_choice("--lang", ["en", "zh"]), metavar="{en,zh}", help=_help("lang"))
    @argument("--out", metavar="NAME", help=_help("out"))
    @argument("-q", "--quiet", action="store_true", help=_help("quiet"))
    @cell_magic
    def grad(self, line: str, cell: str) -> Any:
        """Run the cell once, show what autograd did (the full help, in the user's
        language, is the message ``help.body``); the cell's last value is returned,
        so it shows as ``Out[n]`` exactly as without %%grad."""
        from .capture.runner import CellError
        from .engine import run

        line, silenced = _strip_semicolon(line)
        flag = _LANG_FLAG.search(line)
        with using(flag.group(1) if flag else self.language) as language:
            try:
                args = _parse(self.grad.parser, line)
                options = self._options(args)
                result, last = run(cell, options.validated(), shell=self.shell, language=language)
            except CellError as e:
                if e.shown:
                    return None
                raise e.error from None  # its traceback (the user's frames only) is attached to it
            except GradError as e:
                raise UsageError(t("err.prefix", message=e)) from None
        if args.out is not None:
            self.shell.user_ns[args.out] = result
        if not (args.quiet or silenced):
            _show(result)
        if ends_with_semicolon(cell):
            return None  # a trailing ';' hides the cell's value, as in a plain cell
        return last

    def _options(self, args: argparse.Namespace):
        """The engine's options: the cell's flags over the configured defaults."""
        from .options import GradOptions

        if args.out is not None:
            check_name(args.out, f"--out {args.out}")
            if isinstance(self.shell.user_ns.get(args.out), types.ModuleType):
                raise GradError(t("err.out_module", name=args.out))
        if args.quiz and args.explore:  # (the explorer's headline and tangent are the answers)
            raise GradError(t("err.quiz_explore"))
        if args.plot is False and (args.save or args.range):  # (before the cell runs: nothing ran)
            raise GradError(t("err.no_plot_with", flag="--save" if args.save else "--range"))
        save = os.path.expanduser(args.save) if args.save else None
        return GradOptions(
            wrt=args.wrt, of=args.of, retain_grad=args.retain_grad, dtype=args.dtype or self.dtype,
            device=args.device, digits=self.digits, max_items=self.max_items, lang=args.lang or self.language,
            plot=self.plot if args.plot is None else args.plot, plot_range=args.range, save=save,
            order=args.order, hessian=args.hessian, jacobian=args.jacobian, check=args.check, explore=args.explore,
            symbolic=args.symbolic, expect=args.expect, times_input=args.times_input, graph=args.graph,
            steps=args.steps, quiz=args.quiz,
        )  # fmt: skip


def _show(result) -> None:
    """The report (or, with --expect, its one line; with --quiz, its questions and a graph without
    grads), then the figure as one image/png."""
    from IPython.display import display

    if result.expect_line is not None:  # (as HTML too: JupyterLab links the "f/∂u" of plain text)
        import html

        line = result.expect_line
        display({"text/plain": line, "text/html": f"<p>{html.escape(line)}</p>"}, raw=True, metadata=METADATA)
        if result.quiz is None:
            return
    display(result if result.quiz is None else result.quiz, metadata=METADATA)
    if result.graph is not None:  # an image of its own: SVG inside HTML is stripped when untrusted
        display(result.graph if result.quiz is None else result.quiz.graph, metadata=METADATA)
    if result.figure is not None:
        display(result.figure_bundle(), raw=True, metadata=METADATA)
    if result.explorer is not None:  # a chart the front end draws, its picture, a summary; no HTML
        display(result.explorer.bundle(), raw=True, metadata={**METADATA, **result.explorer.metadata()})


def document(language: str | None) -> None:
    """Write ``%%grad?`` (the magic's docstring) in *language* (``auto``: the locale's)."""
    parser = GradMagic.grad.parser
    with using(language):
        for action in parser._actions:
            if action.help and action.dest != "help":
                action.help = t(f"help.{action.dest}")
        parser.description = t("help.body")
        parser._optionals.title = t("help.options")  # (argparse's own word for the flags' heading)
        # (IPython's help formatter opens with "::", reST for Sphinx: %%grad? shows the usage itself)
        GradMagic.grad.__doc__ = parser.format_help().removeprefix("::\n\n")


def ends_with_semicolon(cell: str) -> bool:
    """Whether the cell's last token is ``;`` (comments and blank lines after it do not count):
    IPython's rule for hiding a cell's value. Ours, not ``DisplayHook.semicolon_at_end_of_expression``
    (IPython 8.10+; Colab's IPython 7.34 looks at the ``run_cell_magic(...)`` line instead)."""
    if ";" not in cell:  # (most cells: no tokenizing)
        return False
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(cell).readline))
    except (tokenize.TokenError, SyntaxError, IndentationError):
        return False
    for token in reversed(tokens):
        if token.type in (tokenize.ENDMARKER, tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT):
            continue
        return token.type == tokenize.OP and token.string == ";"
    return False


def _strip_semicolon(line: str) -> tuple[str, bool]:
    stripped = line.rstrip()
    if stripped.endswith(";"):
        return stripped[:-1], True
    return line, False


_RANGE = re.compile(r"^[A-Za-z_][\w.]*=[^=]*:")  # NAME=A:B
_LANG_FLAG = re.compile(r"--lang(?:\s+|=)(en|zh)\b")


def _parse(parser, line: str):
    """Parse the magic line. Every problem is our own GradError, in the user's
    language: unknown flags and missing values are found here, bad values by
    each flag's ``type``; argparse's own (English) messages are never shown."""
    flag = _LANG_FLAG.search(line)
    with using(flag.group(1) if flag else None):
        tokens = split_line(line)
        for i, token in enumerate(tokens[:-1]):  # --range -2:5: a value that starts with '-'
            if token == "--range":
                tokens[i : i + 2] = [f"--range={tokens[i + 1]}"]
                break
        for i, token in enumerate(tokens[:-1]):  # --explore -2:2 (the one input's range)
            if token == "--explore" and _is_number(tokens[i + 1].partition(":")[0]):
                tokens[i : i + 2] = [f"--explore={tokens[i + 1]}"]
                break
            if token == "--explore":  # --explore u=0:5 v=1:2: one range per input, as in --wrt
                end = i + 1
                while end < len(tokens) and _RANGE.match(tokens[end]):
                    end += 1
                if end > i + 1:
                    tokens[i:end] = ["--explore=" + ",".join(tokens[i + 1 : end])]
                break
        _check_flags(parser, tokens)
        try:
            return parser.parse_args(tokens)
        except UsageError as e:  # what the checks above did not foresee
            raise GradError(t("err.bad_line", line=line.strip(), detail=str(e))) from None


def _check_flags(parser, tokens: list[str]) -> None:
    options = {s: a for a in parser._actions for s in a.option_strings}
    unknown = []
    given: dict[str, str] = {}  # dest -> the flag that set it: one flag, one value (--wrt adds up)
    for i, token in enumerate(tokens):
        if not token.startswith("-") or _is_number(token):
            continue
        name = token.split("=", 1)[0]
        matches = [s for s in options if s == name] or [
            s for s in options if s.startswith(name) and name.startswith("--")
        ]
        if len(matches) != 1:
            unknown.append(token)
            continue
        action = options[matches[0]]
        if action.dest in given and not isinstance(action, argparse._ExtendAction):
            first, second = given[action.dest], matches[0]
            if first == second:
                raise GradError(t("err.flag_repeated", flag=first))
            raise GradError(t("err.flag_twice", first=first, second=second))
        given[action.dest] = matches[0]
        needs = action.nargs is None or action.nargs in ("+",) or isinstance(action.nargs, int)
        if (
            needs
            and "=" not in token
            and action.option_strings
            and not isinstance(
                action, (argparse._StoreTrueAction, argparse.BooleanOptionalAction, argparse._HelpAction)
            )
        ):
            following = tokens[i + 1] if i + 1 < len(tokens) else None
            if following is None or (following.startswith("-") and not _is_number(following)):
                raise GradError(t("err.expected_value", flag=matches[0]))
    if unknown:
        raise GradError(t("err.unrecognized", args=" ".join(unknown)))


def _is_number(token: str) -> bool:
    try:
        float(token)
        return True
    except ValueError:
        return token[:1] == "-" and token[1:2].isdigit()
