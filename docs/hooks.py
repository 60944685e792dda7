"""MkDocs hooks for the API site: pages generated from the repository, and the docstring check.

The site holds no copies: each package's README is its section's front page, its API page
is rendered by mkdocstrings from the docstrings, and the root README, MIGRATION.md and
examples/README.md are pages too. Relative links between those files are rewritten to the
pages they became; any other relative link stays as written, so strict mode fails on it.
Before the build, ``check_docstrings`` lists the public names without a docstring and
the build stops if there are any.
"""

from __future__ import annotations

import posixpath
import re
import sys
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

sys.path.insert(0, str(Path(__file__).resolve().parent))
import check_docstrings  # found through the path above: docs/ is not a package

ROOT = check_docstrings.ROOT
PACKAGES = check_docstrings.PACKAGES

# repository path -> site page (or asset) it becomes
SITE: dict[str, str] = {
    "README.md": "index.md",
    "MIGRATION.md": "migration.md",
    "examples/README.md": "examples.md",
    "examples/generate_page.png": "generate_page.png",
}
for _name in PACKAGES:
    SITE[f"packages/b4t-{_name}/README.md"] = f"b4t-{_name}/index.md"
    SITE[f"packages/b4t-{_name}"] = f"b4t-{_name}/index.md"

API_PAGE = """# `b4t.{name}` API

The public names of `b4t.{name}` (its `__all__`), from their docstrings.
The package's guide is [its front page](index.md).

::: b4t.{name}
"""

_LINK = re.compile(r"(\]\()([^)\s]+)(\))")


def _rewrite_links(markdown: str, source: str, page: str) -> str:
    """Point relative links of the repository file ``source`` at the pages they became."""

    def replace(match: re.Match[str]) -> str:
        target = match.group(2)
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith(("#", "/")):
            return match.group(0)
        path, _, anchor = target.partition("#")
        repo_path = posixpath.normpath(posixpath.join(posixpath.dirname(source), path))
        if repo_path not in SITE:
            return match.group(0)
        new = posixpath.relpath(SITE[repo_path], posixpath.dirname(page) or ".")
        return f"{match.group(1)}{new}{'#' + anchor if anchor else ''}{match.group(3)}"

    return _LINK.sub(replace, markdown)


def github_slug(value: str, separator: str = "-") -> str:
    """Heading ids as GitHub makes them, so the READMEs' ``#anchor`` links hold on the site."""
    return re.sub(r"[^\w\- ]", "", value.strip().lower()).replace(" ", separator)


def on_config(config: Any) -> Any:
    """Give headings GitHub's ids."""
    config["mdx_configs"].setdefault("toc", {})["slugify"] = github_slug
    return config


def on_pre_build(config: Any) -> None:
    """Stop the build, naming them, when public names lack a docstring or a reference in
    one names nothing."""
    problems = check_docstrings.check()
    if problems:
        raise PluginError(problems)


def on_files(files: Files, config: Any) -> Files:
    """Add the pages made from the repository's READMEs and the API pages."""
    for source, page in SITE.items():
        path = ROOT / source
        if not path.is_file():
            continue
        if page.endswith(".md"):
            text = _rewrite_links(path.read_text(encoding="utf-8"), source, page)
            files.append(File.generated(config, page, content=text))
        else:
            files.append(File.generated(config, page, abs_src_path=str(path)))
    for name in PACKAGES:
        content = API_PAGE.format(name=name)
        files.append(File.generated(config, f"b4t-{name}/api.md", content=content))
    return files
