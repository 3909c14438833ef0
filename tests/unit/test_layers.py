"""The package's layering (issue 7): import-linter's contracts from pyproject.toml hold, and no
module imports itself back through any chain, lazy imports inside functions included (grimp
reads every import statement, wherever it is)."""

from __future__ import annotations

from pathlib import Path

import grimp
import pytest
from importlinter import configuration
from importlinter.application import use_cases

pytestmark = pytest.mark.unit

PACKAGE = "mcp_oidc_provider"
PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph(PACKAGE, exclude_type_checking_imports=True, cache_dir=None)


def edges(graph: grimp.ImportGraph) -> set[tuple[str, str]]:
    return {(m, imported) for m in graph.modules for imported in graph.find_modules_directly_imported_by(m)}


def find_cycle(graph: grimp.ImportGraph) -> list[str] | None:
    """One import cycle, as the chain of modules that closes it, or None."""
    done: set[str] = set()
    path: list[str] = []
    on_path: set[str] = set()

    def visit(module: str) -> list[str] | None:
        path.append(module)
        on_path.add(module)
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            if imported in on_path:
                return [*path[path.index(imported) :], imported]
            if imported not in done:
                cycle = visit(imported)
                if cycle:
                    return cycle
        path.pop()
        on_path.discard(module)
        done.add(module)
        return None

    for module in sorted(graph.modules):
        if module not in done:
            cycle = visit(module)
            if cycle:
                return cycle
    return None


def test_the_import_linter_contracts_in_pyproject_are_kept(capsys: pytest.CaptureFixture[str]) -> None:
    # Layers run > provider|verifier > web > flows > bearer|upstream|cimd > store > crypto > core;
    # flows never import web; the verifier never imports flows.
    configuration.configure()
    kept = use_cases.lint_imports(config_filename=str(PYPROJECT), cache_dir=None, no_logo=True)
    report = capsys.readouterr().out
    assert kept, report
    assert "0 broken" in report


def test_the_graph_checked_is_the_whole_package(graph: grimp.ImportGraph) -> None:
    assert {f"{PACKAGE}.{layer}" for layer in ("core", "crypto", "store", "flows", "web", "run")} <= graph.modules
    assert len(edges(graph)) > 100


def test_no_module_imports_itself_back_through_any_chain(graph: grimp.ImportGraph) -> None:
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_check_finds_a_cycle_when_there_is_one() -> None:
    looped = grimp.build_graph(PACKAGE, cache_dir=None)
    importer, imported = min(edges(looped))
    looped.add_import(importer=imported, imported=importer)
    cycle = find_cycle(looped)
    assert cycle is not None
    assert cycle[0] == cycle[-1]
    assert {importer, imported} <= set(cycle)


def test_no_import_hides_under_type_checking(graph: grimp.ImportGraph) -> None:
    # An import only under `if TYPE_CHECKING:` is how a cycle hides from the interpreter.
    with_type_checking = grimp.build_graph(PACKAGE, exclude_type_checking_imports=False, cache_dir=None)
    assert edges(with_type_checking) == edges(graph)
