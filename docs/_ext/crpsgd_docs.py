"""Reference pages generated at build time from the code, so that they cannot drift from it.

``.. crpsgd-options::``
    every option of ``python -m crpsgd_mpi.run``: the argparse parser that ``--help`` prints
    (``crpsgd_mpi.run.build_parser``), group by group, each option with its metavar, help text and default, as
    Sphinx ``option`` entries (``:option:`crpsgd_mpi.run --rho``` links to one).
``.. crpsgd-components::``
    every registered algorithm, batch schedule, model and data set (the registries of ``crpsgd_mpi.registry``):
    its name, the first line of its docstring, the core settings it reads (``owns``) and the parameters it declares
    (``crpsgd_mpi.params.Param``).

Both write reStructuredText (``options_rst``, ``components_rst``: plain functions, also used by the tests) that the
directive parses in place; nothing is written into the source tree.
"""

from __future__ import annotations

import argparse
import re
from typing import Any

PROGRAM = "crpsgd_mpi.run"
#: Characters that reStructuredText would read as markup in a help text: each is written escaped.
_MARKUP = re.compile(r"([\\*`|_\[\]<>:])")


def escape(text: str) -> str:
    """`text` as literal reStructuredText: every markup character backslash-escaped."""
    return _MARKUP.sub(r"\\\1", text)


def _parser() -> argparse.ArgumentParser:
    """The parser `python -m crpsgd_mpi.run --help` prints, with the registered names in the help of the options
    that choose a component (as --help shows them)."""
    from crpsgd_mpi.run import _registered_help, build_parser

    parser = build_parser()
    _registered_help(parser)
    return parser


def option_entries(parser: argparse.ArgumentParser) -> list[tuple[str, list[tuple[str, str]]]]:
    """(group title, [(invocation, help)]) for every argparse group that has options, in --help's order; the
    invocation as --help writes it (`--rho X`, `--intercept, --no-intercept`), the help expanded as --help does."""
    formatter = parser._get_formatter()
    groups = []
    for group in parser._action_groups:
        entries = []
        for action in group._group_actions:
            if action.help == argparse.SUPPRESS or not action.option_strings:
                continue
            invocation = formatter._format_action_invocation(action)
            entries.append((invocation, formatter._expand_help(action) if action.help else ""))
        if entries:
            title = group.title or "options"
            groups.append(("general" if title == "options" else title, entries))  # argparse's name for the rest
    return groups


def options_rst(parser: argparse.ArgumentParser | None = None) -> str:
    """The option reference as reStructuredText: a section per group, an ``option`` entry per option."""
    parser = parser or _parser()
    lines = [f".. program:: {PROGRAM}", ""]
    for title, entries in option_entries(parser):
        heading = title[0].upper() + title[1:]
        lines += [escape(heading), "-" * len(escape(heading)), ""]
        for invocation, helptext in entries:
            lines += [f".. option:: {invocation}", "", f"   {escape(helptext)}", ""]
    return "\n".join(lines)


def components_rst() -> str:
    """A table per registry: every registered component, what it is, what it reads, what it declares."""
    from crpsgd_mpi.registry import REGISTRIES

    lines = []
    for registry in REGISTRIES:
        title = f"{registry.kind[0].upper()}{registry.kind[1:]}s (--{registry.field.replace('_', '-')})"
        lines += [escape(title), "-" * len(escape(title)), "",
                  ".. list-table::", "   :header-rows: 1", "   :widths: 15 45 20 20", "",
                  "   * - name", "     - what it is", "     - core settings it reads", "     - its own parameters"]
        for name, doc in registry.table():
            owns = ", ".join(f"``--{o.replace('_', '-')}``" for o in registry.owns(name)) or "\\-"
            params = ", ".join(f"``{p.flag}`` ({escape(p.describe())}): {escape(p.help)}"
                               for p in registry.params(name)) or "\\-"
            what = escape(doc) or "\\-"
            lines += [f"   * - ``{name}``", f"     - {what}", f"     - {owns}", f"     - {params}"]
        lines.append("")
    return "\n".join(lines)


def setup(app: Any) -> dict[str, Any]:
    from docutils.parsers.rst import Directive
    from sphinx.util.parsing import nested_parse_to_nodes

    class _Generated(Directive):
        has_content = False
        make: Any = None

        def run(self) -> list[Any]:
            text = type(self).make()
            return nested_parse_to_nodes(self.state, text, source=f"<{self.name}>", allow_section_headings=True,
                                         keep_title_context=True)

    class Options(_Generated):
        make = staticmethod(options_rst)

    class Components(_Generated):
        make = staticmethod(components_rst)

    app.add_directive("crpsgd-options", Options)
    app.add_directive("crpsgd-components", Components)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
