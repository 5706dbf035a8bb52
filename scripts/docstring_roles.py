"""A griffe extension for the API reference: this project's docstrings name other objects with
Sphinx roles (``:class:`Results```, ``:func:`run```) and open literal blocks with ``::``, which
the Google-style parser of mkdocstrings would print as they are. It turns a role into a plain code
span and drops a lone ``::`` line (the indented block after it is already code in Markdown).

Loaded by ``mkdocs.yml`` (``extensions:`` of the python handler); the docstrings stay unchanged.
"""

from __future__ import annotations

import re
from typing import Any

from griffe import Extension, Object

ROLE = re.compile(r":(?:class|func|meth|attr|data|mod|exc|obj):`~?([^`]+)`")
LONE_LITERAL_MARKER = re.compile(r"^[ \t]*::[ \t]*\n", re.M)


def plain(text: str) -> str:
    """The docstring with roles as code spans and without lone ``::`` lines."""
    return LONE_LITERAL_MARKER.sub("", ROLE.sub(r"`\1`", text))


class DocstringRoles(Extension):
    def on_object(self, *, obj: Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = plain(obj.docstring.value)
