"""The documentation's files: every relative link of the README resolves, and every page under
`docs/` is in the site's navigation (`make docs`, which CI runs, builds it with `--strict`)."""

from __future__ import annotations

import re

import yaml

from tests.conftest import ROOT


def _nav_pages(node: object) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [p for value in node.values() for p in _nav_pages(value)]
    if isinstance(node, list):
        return [p for item in node for p in _nav_pages(item)]
    return []


def test_every_relative_link_of_the_readme_resolves() -> None:
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", (ROOT / "README.md").read_text())
    relative = [link for link in links if "://" not in link]
    assert len(relative) >= 10
    assert [link for link in relative if not (ROOT / link).is_file()] == []


def test_every_page_is_in_the_navigation_and_every_entry_is_a_page() -> None:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    nav = _nav_pages(config["nav"])
    docs = ROOT / config["docs_dir"]
    pages = {
        str(p.relative_to(docs))
        for p in docs.rglob("*.md")
        if "examples" not in p.relative_to(docs).parts
    }
    assert sorted(nav) == sorted(pages)
    assert len(set(nav)) == len(nav)
