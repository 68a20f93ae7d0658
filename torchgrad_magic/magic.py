"""The ``%%grad`` cell magic: declared arguments, then one call into the engine.

This module must stay light: loading the extension imports neither torch nor
matplotlib. The engine (and torch) is imported the first time a cell runs.

Defaults are traitlets on :class:`GradMagic`, so ``%config GradMagic`` lists
them, ``%config GradMagic.language = 'zh'`` sets one, and ``ipython_config.py``
can set them with ``c.GradMagic.digits = 6``.
"""

from __future__ import annotations

import argparse
import re

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments
from traitlets import Bool, CaselessStrEnum, Enum, Int, observe

from .messages import t, using
from .spec import GradError, check_name, split_line

DTYPES = ["float16", "bfloat16", "float32", "float64"]


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

    def __init__(self, shell=None, **kwargs):
        super().__init__(shell=shell, **kwargs)
        document(self.language)

    @observe("language")
    def _language_changed(self, change) -> None:
        document(change.new)

    @magic_arguments("%grad")  # shown as %%grad in the help
    @argument("--wrt", nargs="+", action="extend", metavar="SPEC", help=_help("wrt"))
    @argument("--of", metavar="NAME", help=_help("of"))
    @argument("--retain-grad", action="store_true", help=_help("retain_grad"))
    @argument("--dtype", choices=DTYPES, help=_help("dtype"))
    @argument("--device", metavar="DEV", help=_help("device"))
    @argument("--plot", action=argparse.BooleanOptionalAction, help=_help("plot"))
    @argument("--range", metavar="A:B", help=_help("range"))
    @argument("--save", metavar="FILE", help=_help("save"))
    @argument("--order", type=int, default=1, metavar="N", help=_help("order"))
    @argument("--hessian", action="store_true", help=_help("hessian"))
    @argument("--jacobian", action="store_true", help=_help("jacobian"))
    @argument("--check", action="store_true", help=_help("check"))
    @argument("--symbolic", action="store_true", help=_help("symbolic"))
    @argument("--expect", nargs="+", metavar="VALUE", help=_help("expect"))
    @argument("--graph", nargs="?", const="simple", choices=["simple", "full"], help=_help("graph"))
    @argument("--times-input", action="store_true", help=_help("times_input"))
    @argument("--lang", choices=["en", "zh"], help=_help("lang"))
    @argument("--out", metavar="NAME", help=_help("out"))
    @argument("-q", "--quiet", action="store_true", help=_help("quiet"))
    @cell_magic
    def grad(self, line: str, cell: str) -> None:
        """Run the cell, differentiate its output and show the table (the full
        help, in the user's language, is the message ``help.body``)."""
        from .engine import grad

        line, silenced = _strip_semicolon(line)
        with using(self.language):
            try:
                args = _parse(self.grad.parser, line)
                result = grad(cell, shell=self.shell, **self._options(args))
            except GradError as e:
                raise UsageError(t("err.prefix", message=e)) from None
        if args.out is not None:
            self.shell.user_ns[args.out] = result
        if not (args.quiet or silenced):
            _show(result)

    def _options(self, args: argparse.Namespace) -> dict:
        """The engine's keyword arguments: the cell's flags over the configured defaults."""
        if args.out is not None:
            check_name(args.out, f"--out {args.out}")
        return dict(
            wrt=args.wrt, of=args.of, retain_grad=args.retain_grad, dtype=args.dtype or self.dtype,
            device=args.device, digits=self.digits, max_items=self.max_items, lang=args.lang or self.language,
            plot=self.plot if args.plot is None else args.plot, plot_range=args.range, save=args.save,
            order=args.order, hessian=args.hessian, jacobian=args.jacobian, check=args.check,
            symbolic=args.symbolic, expect=args.expect, times_input=args.times_input, graph=args.graph,
        )  # fmt: skip


def _show(result) -> None:
    """The report (or, with --expect, its one line), then the figure as one image/png."""
    from IPython.display import display

    if result.expect_line is not None:
        print(result.expect_line)
        return
    display(result)
    if result.figure is not None:
        display(result.figure_bundle(), raw=True)


def document(language: str | None) -> None:
    """Write ``%%grad?`` (the magic's docstring) in *language* (``auto``: the locale's)."""
    parser = GradMagic.grad.parser
    with using(language):
        for action in parser._actions:
            if action.help and action.dest != "help":
                action.help = t(f"help.{action.dest}")
        parser.description = t("help.body")
        GradMagic.grad.__doc__ = parser.format_help()


def _strip_semicolon(line: str) -> tuple[str, bool]:
    stripped = line.rstrip()
    if stripped.endswith(";"):
        return stripped[:-1], True
    return line, False


_ARGPARSE = [
    (re.compile(r"unrecognized arguments: (?P<args>.*)"), "err.unrecognized"),
    (re.compile(r"argument (?P<flag>\S+): invalid choice: (?P<value>\S+) \(choose from (?P<choices>.*)\)"), "err.invalid_choice"),
    (re.compile(r"argument (?P<flag>\S+): expected (?:at least )?one argument"), "err.expected_value"),
    (re.compile(r"argument (?P<flag>\S+): invalid (?P<kind>\w+) value: (?P<value>.*)"), "err.invalid_value"),
]  # fmt: skip


_LANG_FLAG = re.compile(r"--lang(?:\s+|=)(en|zh)\b")


def _parse(parser, line: str):
    """Parse the magic line; errors come in the user's language (a --lang on
    the same line counts even when the rest of the line cannot be parsed)."""
    flag = _LANG_FLAG.search(line)
    with using(flag.group(1) if flag else None):
        try:
            tokens = split_line(line)
            for i, token in enumerate(tokens[:-1]):  # --range -2:5: a value that starts with '-'
                if token == "--range":
                    tokens[i : i + 2] = [f"--range={tokens[i + 1]}"]
                    break
            return parser.parse_args(tokens)
        except UsageError as e:
            for pattern, message_id in _ARGPARSE:
                match = pattern.search(str(e))
                if match:
                    raise GradError(t(message_id, **match.groupdict())) from None
            raise
