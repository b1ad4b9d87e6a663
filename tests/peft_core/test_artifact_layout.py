"""The artifact layout has one owner (peft_core/artifact_layout.py): its sections, its kinds, and no copies."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from peft_core import artifact_layout
from peft_core.artifact_layout import (
    ARTIFACT_KINDS, BACKBONE, KIND_OF_METHOD, LEGACY_BACKBONE, artifact_kind, backbone_overrides, prefixed, under,
)
from peft_core.errors import ArtifactError
from peft_core.method_names import ALL_METHODS

PEFT_CORE = Path(artifact_layout.__file__).parent
SECTIONS = [value for name, value in vars(artifact_layout).items()
            if name.isupper() and isinstance(value, str) and value.endswith((".", "/"))]


def test_under_strips_what_prefixed_adds():
    tensors = {"a": 1, "b.c": 2}
    assert under(prefixed(tensors, "head.") | {"other.x": 3}, "head.") == tensors
    assert under({"headx": 1}, "head.") == {}


def test_backbone_overrides_read_the_legacy_section_too():
    new, old = torch.ones(2), torch.zeros(2)
    assert backbone_overrides({f"{BACKBONE}a.weight": new, f"{LEGACY_BACKBONE}b.bias": old, "head.w": old}) == {
        "a.weight": new, "b.bias": old}


def test_every_method_an_artifact_can_name_has_exactly_one_kind():
    assert sum(len(kind.methods) for kind in ARTIFACT_KINDS) == len(KIND_OF_METHOD)
    assert set(ALL_METHODS) <= set(KIND_OF_METHOD)
    assert {"prompt_adapter", "hyperformer_adapter"} <= set(KIND_OF_METHOD)


@pytest.mark.parametrize("kind", ARTIFACT_KINDS, ids=lambda k: k.name)
def test_every_kind_names_functions_that_exist(kind):
    assert callable(kind.loader()) and kind.writers() and all(callable(w) for w in kind.writers())


def test_an_unknown_method_is_refused_naming_the_known_ones():
    with pytest.raises(ArtifactError, match="'lora' artifact, which has no loader; known: adapter, "):
        artifact_kind({"method": "lora"}, Path("fits/x"))


def _code_strings(tree: ast.AST) -> list[str]:
    """Every string constant of a module but its docstrings."""
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(getattr(node, "body", None), list) and node.body
                  and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    return [node.value for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings]


def _is_sub_dict(node: ast.AST) -> bool:
    """`{k[len(prefix):]: v for ... if k.startswith(prefix)}`: the comprehension `under` is."""
    return (isinstance(node, ast.DictComp) and isinstance(node.key, ast.Subscript)
            and isinstance(node.key.slice, ast.Slice) and any(
                isinstance(c, ast.Call) and getattr(c.func, "attr", None) == "startswith"
                for g in node.generators for cond in g.ifs for c in ast.walk(cond)))


def test_no_other_module_spells_a_section_or_takes_a_sub_dict_itself():
    spelled, sub_dicts = {}, []
    for path in sorted(PEFT_CORE.rglob("*.py")):
        module = path.relative_to(PEFT_CORE).as_posix()
        if module == "artifact_layout.py":
            continue
        tree = ast.parse(path.read_text())
        found = sorted({s for s in _code_strings(tree) for section in SECTIONS if s.startswith(section)})
        if found:
            spelled[module] = found
        sub_dicts += [f"{module}:{node.lineno}" for node in ast.walk(tree) if _is_sub_dict(node)]
    # module paths in BERT and T5 and a file name, not artifact sections
    assert spelled == {"architectures.py": ["encoder.block", "encoder.layer"], "compute_versions.py": ["sites.py"]}
    assert sub_dicts == []


def test_the_hyperformer_package_imports_neither_multitask_nor_transfer():
    """Imports run one way: multitask and the jobs build on hyperformer/, not the reverse."""
    imported = {(path.name, node.module) for path in (PEFT_CORE / "hyperformer").glob("*.py")
                for node in ast.walk(ast.parse(path.read_text()))
                if isinstance(node, ast.ImportFrom) and node.module
                and node.module.split(".")[-1] in {"multitask", "transfer"}}
    assert imported == set()
