"""The declared method names and the registries built over them cannot drift apart."""

from __future__ import annotations

import pytest

from peft_core.method_names import implemented


def test_a_registry_comes_in_the_declared_order():
    assert list(implemented("test", ("b", "a"), {"a": 1, "b": 2})) == ["b", "a"]


@pytest.mark.parametrize(("names", "implementations", "expected"), [
    (("a", "b"), {"a": 1}, r"declared but not implemented \['b'\], implemented but not declared \[\]"),
    (("a",), {"a": 1, "c": 3}, r"declared but not implemented \[\], implemented but not declared \['c'\]"),
])
def test_a_missing_or_undeclared_implementation_fails(names, implementations, expected):
    with pytest.raises(RuntimeError, match=expected):
        implemented("test", names, implementations)
