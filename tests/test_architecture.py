"""The import rules of docs/architecture.md, read from the source: every `src.*` import of every
module in `src/`, against the layers each package may import."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC.name

# what each package may import besides itself; the entry points may import anything
ALLOWED = {
    "utils": set(),
    "metrics": {"utils"},
    "losses": {"utils"},
    "data": {"utils"},
    "evaluation": {"metrics", "utils"},
    "models": {"losses", "metrics", "evaluation", "utils"},
    "callbacks": {"metrics", "evaluation", "utils"},
}
# single modules a package may import from a layer it may not import as a whole
ALLOWED_MODULES = {"callbacks": {"src.data.resumable"}}
ENTRY_POINTS = {"src.train", "src.eval"}
# the models every model may build on: the shared base and the shared training regimes
SHARED_MODELS = ("base", "adversarial")


def _module(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports() -> list[tuple[str, str]]:
    """(importer, imported) for every `src.*` import in src/, at any depth of the module."""
    found = []
    for path in sorted(SRC.rglob("*.py")):
        importer = _module(path)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            found += [(importer, name) for name in names if name.split(".")[0] == PACKAGE]
    return found


def violation(importer: str, imported: str) -> str | None:
    """Why `importer` may not import `imported`, or None."""
    if importer in ENTRY_POINTS:
        return None
    package, target = importer.split(".")[1], imported.split(".")[1]
    if target in ENTRY_POINTS or imported in ENTRY_POINTS:
        return "imports an entry point"
    allowed = ALLOWED.get(package, set())
    if (
        package != target
        and target not in allowed
        and imported not in ALLOWED_MODULES.get(package, ())
    ):
        return f"{PACKAGE}.{package} may not import {PACKAGE}.{target}"
    if package == target == "models":
        layer = importer.split(".")[2]
        into = imported.split(".")[2] if imported.count(".") >= 2 else ""
        if layer == "components" and into not in ("", "components"):
            return "a component imports a model"
        if into not in ("", "components", *SHARED_MODELS, layer):
            return "a model imports another model's module"
    return None


def test_no_module_imports_a_layer_above_its_own() -> None:
    found = imports()
    assert len(found) > 50  # the reader sees the imports
    broken = [f"{a} -> {b}: {why}" for a, b in found if (why := violation(a, b))]
    assert broken == [], "\n".join(broken)


@pytest.mark.parametrize(
    ("importer", "imported", "why"),
    [
        ("src.data.tagging", "src.models.crf_tagger", "src.data may not import src.models"),
        ("src.models.vae", "src.data.idx", "src.models may not import src.data"),
        ("src.metrics.spans", "src.losses.tagging", "src.metrics may not import src.losses"),
        ("src.utils.run", "src.callbacks.run_status", "src.utils may not import src.callbacks"),
        ("src.callbacks.sample_quality", "src.models.vae", "src.callbacks may not import"),
        ("src.callbacks.run_status", "src.data.toy2d", "src.callbacks may not import src.data"),
        ("src.models.vae", "src.models.ebm", "a model imports another model's module"),
        ("src.models.ebm_generator", "src.models.wgan_gp", "a model imports another model's"),
        ("src.models.adversarial", "src.models.vae", "a model imports another model's module"),
        ("src.models.components.nets", "src.models.vae", "a component imports a model"),
        ("src.losses.elbo", "src.train", "imports an entry point"),
    ],
)
def test_the_rules_refuse_upward_imports(importer: str, imported: str, why: str) -> None:
    assert why in (violation(importer, imported) or "")


@pytest.mark.parametrize(
    ("importer", "imported"),
    [
        ("src.models.vae", "src.models.base"),
        ("src.models.ebm_generator", "src.models.adversarial"),
        ("src.models.vae", "src.models.components.latents"),
        ("src.models.components.capsnets", "src.models.components.capsule"),
        ("src.models.ebm", "src.metrics.toy2d"),
        ("src.callbacks.sample_quality", "src.metrics.sample_quality"),
        ("src.train", "src.callbacks.run_status"),
        ("src.data.toy2d", "src.data.toy_distributions"),
        ("src.callbacks.resumable_training", "src.data.resumable"),
    ],
)
def test_the_rules_allow_imports_downward(importer: str, imported: str) -> None:
    assert violation(importer, imported) is None
