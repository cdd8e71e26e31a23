"""params.yaml as `dvc exp run -S key=value` rewrites it: DVC's own code for -S (Hydra's override grammar, then
its YAML round trip) changes the set value's lines and nothing else: comments, order and layout are kept."""

import shutil

import pytest
import yaml
from conftest import REPO
from dvc.utils.hydra import apply_overrides

PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())


def leaves(values: dict, prefix: str = "") -> list[tuple[str, object]]:
    """(key, value) of every param under a section, a nested one's key dotted (networks: `baseline.epochs`)."""
    found = []
    for key, value in values.items():
        if isinstance(value, dict):
            found += leaves(value, f"{prefix}{key}.")
        else:
            found.append((f"{prefix}{key}", value))
    return found


def lookup(params: dict, section: str, key: str):
    value = params[section]
    for part in key.split("."):
        value = value[part]
    return value


def new_value(value):
    """Another value of the same type: a number with more digits, a text of the same length (a text that makes its
    line longer than 80 characters goes onto a line of its own, as download.url is laid out), a list one item
    longer."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value * 3 + 0.125
    if isinstance(value, list):
        return [*value, "extra"]
    return value[::-1] if len(set(value)) > 1 else value + "x"


def override(section: str, key: str, value) -> str:
    """`section.key=value` as typed after -S (texts quoted for Hydra's grammar)."""
    if isinstance(value, list):
        return f"{section}.{key}=[{','.join(repr(v) for v in value)}]"
    return f"{section}.{key}={value!r}" if isinstance(value, str) else f"{section}.{key}={str(value).lower()}"


@pytest.mark.parametrize(
    ("section", "key"),
    [(section, key) for section, values in PARAMS.items() for key, value in leaves(values) if value is not None],
    ids=lambda part: str(part),
)
def test_dvc_exp_run_set_param_changes_only_that_params_lines(tmp_path, section, key):
    path = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", path)
    before = path.read_text().splitlines()
    value = new_value(lookup(PARAMS, section, key))
    apply_overrides(path, [override(section, key, value)])  # what `dvc exp run -S section.key=value` calls
    after = path.read_text().splitlines()
    assert lookup(yaml.safe_load(path.read_text()), section, key) == value
    assert without_entry(after, section, key) == without_entry(before, section, key)


def without_entry(lines: list[str], section: str, key: str) -> list[str]:
    """The file's lines without one param's: its key line and the lines under it (list items, a long text). A
    dotted key is found section by section, each part indented two more spaces."""
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{section}:"))
    indent = ""
    for part in key.split("."):
        indent += "  "
        start = next(i for i in range(start, len(lines)) if lines[i].startswith(f"{indent}{part}:"))
    end = start + 1
    while end < len(lines) and (lines[end].startswith(f"{indent}- ") or lines[end].startswith(f"{indent}  ")):
        end += 1
    return lines[:start] + lines[end:]
