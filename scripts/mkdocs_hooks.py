"""mkdocs hooks (``hooks:`` in mkdocs.yml).

Code fences marked ````python notest```` are skipped by pytest-markdown-docs (which runs every
other ``python`` block in CI); superfences would not recognise that info string and render the
block as text, so the marker is dropped before rendering.
"""

from __future__ import annotations

import re
from typing import Any

_NOTEST = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})python[ \t]+notest[ \t]*$", re.M)


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    """Render ````python notest```` fences as plain ````python```` ones."""
    return _NOTEST.sub(r"\g<indent>\g<fence>python", markdown)
