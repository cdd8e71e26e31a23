"""dvc.yaml: every stage lists as dependencies the project's modules it runs (its own and every fraudflow module it
imports, directly or through another), and no other module, so that a change to any of them reruns it."""

import ast

import pytest
import yaml
from conftest import REPO

STAGES = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


def imported(path: str) -> set[str]:
    """The fraudflow modules a file imports, as paths."""
    found = set()
    for node in ast.walk(ast.parse((REPO / path).read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "fraudflow":
            found |= {f"fraudflow/{alias.name}.py" for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("fraudflow."):
            found.add(node.module.replace(".", "/") + ".py")
        elif isinstance(node, ast.Import):
            found |= {a.name.replace(".", "/") + ".py" for a in node.names if a.name.startswith("fraudflow.")}
    return {module for module in found if (REPO / module).is_file()}


def closure(path: str) -> set[str]:
    """The file and every project module it runs."""
    seen, todo = {path}, [path]
    while todo:
        for module in imported(todo.pop()) - seen:
            seen.add(module)
            todo.append(module)
    return seen - {"fraudflow/__init__.py"}  # the pins: every module imports it, and it changes no result


@pytest.mark.parametrize("name", list(STAGES))
def test_a_stage_depends_on_exactly_the_modules_it_runs(name):
    stage = STAGES[name].get("do", STAGES[name])
    module = stage["cmd"].split()[2]  # python -m stages.<name> ...
    listed = {dep for dep in stage["deps"] if dep.endswith(".py")}
    assert listed == closure(module.replace(".", "/") + ".py"), name
