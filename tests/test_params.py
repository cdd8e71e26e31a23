"""params.yaml as `dvc exp run -S key=value` rewrites it: DVC's own YAML round trip changes the set value's line
and nothing else (comments, order, layout kept)."""

import difflib
import shutil

import pytest
import yaml
from conftest import REPO
from dvc.utils.serialize import modify_yaml


def scalar_keys(params: dict) -> list[tuple[str, str]]:
    return [
        (section, key)
        for section, values in params.items()
        for key, value in values.items()
        if value is not None and not isinstance(value, (list, dict))
    ]


def new_value(value):
    """Another value of the same type: a number with more digits, a text of the same length (a text that makes its
    line longer than 80 characters goes onto a line of its own, as download.url is laid out)."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value * 3 + 0.125
    return value[::-1] if len(set(value)) > 1 else value + "x"


PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())


@pytest.mark.parametrize(("section", "key"), scalar_keys(PARAMS), ids=lambda part: str(part))
def test_setting_a_param_as_dvc_exp_run_does_changes_only_its_line(tmp_path, section, key):
    path = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", path)
    before = path.read_text().splitlines()
    with modify_yaml(path) as params:  # what `dvc exp run -S section.key=value` calls
        params[section][key] = new_value(PARAMS[section][key])
    after = path.read_text().splitlines()
    changed = [line for line in difflib.unified_diff(before, after, lineterm="", n=0) if line[:1] in "+-"][2:]
    assert len(changed) == 2, "\n".join(changed)  # one line out, one line in
    assert yaml.safe_load(path.read_text())[section][key] == new_value(PARAMS[section][key])
