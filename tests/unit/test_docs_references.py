"""docs/SECURITY.md names the code behind each property; every name must exist."""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from mcp_oidc_provider.core.audit import Event

pytestmark = pytest.mark.unit

DOC = Path(__file__).resolve().parents[2] / "docs" / "SECURITY.md"
LAYERS = ("flows", "web", "core", "crypto", "store", "upstream", "cimd", "bearer", "provider", "verifier", "run")
AUDIT_EVENTS = set(Event.__args__)  # type: ignore[attr-defined]


def resolve(reference: str) -> Any:
    parts = reference.split(".")
    module: ModuleType | None = None
    for cut in range(len(parts), 0, -1):
        try:
            module = importlib.import_module("mcp_oidc_provider." + ".".join(parts[:cut]))
        except ImportError:
            continue
        break
    assert module is not None, reference
    obj: Any = module
    for attribute in parts[cut:]:
        obj = getattr(obj, attribute)
    return obj


def test_every_module_function_named_in_the_security_document_exists() -> None:
    pattern = r"`((?:" + "|".join(LAYERS) + r")\.[A-Za-z_][A-Za-z0-9_.]*)`"
    references = set(re.findall(pattern, DOC.read_text()))
    assert references
    missing = []
    for reference in sorted(references - AUDIT_EVENTS):
        try:
            resolve(reference)
        except (AttributeError, AssertionError):
            missing.append(reference)
    assert missing == []
