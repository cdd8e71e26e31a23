"""requirements.txt picks the TensorFlow distribution each platform has; the Makefile checks the Python version."""

import os
import shutil
import subprocess

import pytest
from conftest import REPO
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

TENSORFLOWS = {"tensorflow", "tensorflow-cpu"}


def environment(sys_platform: str, system: str, machine: str) -> dict:
    """Marker values as Python 3.11 reports them on a platform (sys.platform, platform.system(), .machine())."""
    return {
        "sys_platform": sys_platform,
        "platform_system": system,
        "platform_machine": machine,
        "os_name": "nt" if system == "Windows" else "posix",
        "python_version": "3.11",
    }


# Each platform's environment and the one distribution that has wheels there.
PLATFORMS = {
    "linux-x86_64": (environment("linux", "Linux", "x86_64"), "tensorflow-cpu"),
    "linux-aarch64": (environment("linux", "Linux", "aarch64"), "tensorflow"),
    "macos-arm64": (environment("darwin", "Darwin", "arm64"), "tensorflow"),
    "windows-x86_64": (environment("win32", "Windows", "AMD64"), "tensorflow-cpu"),
}


def requirements() -> list[Requirement]:
    lines = (line.split("#")[0].strip() for line in (REPO / "requirements.txt").read_text().splitlines())
    return [Requirement(line) for line in lines if line]


def tensorflows() -> list[Requirement]:
    return [r for r in requirements() if canonicalize_name(r.name) in TENSORFLOWS]


@pytest.mark.parametrize("platform", PLATFORMS)
def test_one_tensorflow_per_platform(platform):
    values, expected = PLATFORMS[platform]
    selected = [canonicalize_name(r.name) for r in tensorflows() if r.marker is None or r.marker.evaluate(values)]
    assert selected == [expected]


def test_tensorflows_pinned_to_one_version():
    pins = {str(r.specifier) for r in tensorflows()}
    assert len(pins) == 1 and next(iter(pins)).startswith("=="), pins


@pytest.fixture
def scratch(tmp_path):
    """A copy of the Makefile and requirements.txt, so make never touches the repository's .venv."""
    for name in ("Makefile", "requirements.txt"):
        shutil.copy(REPO / name, tmp_path / name)
    return tmp_path


def stand_in(directory, version: str):
    """An interpreter that prints `Python <version>` and logs its arguments to calls.log; also first on PATH as
    python3, so that no real interpreter can make a venv here whatever the Makefile calls."""
    path = directory / f"python{version}"
    path.write_text(f'#!/bin/sh\necho "$@" >> {directory}/calls.log\necho "Python {version}"\n')
    path.chmod(0o755)
    (directory / "python3").symlink_to(path)
    return path


def make(scratch, *arguments):
    # Without the variables of a calling make (make test), whose flags and level would change the output.
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("MAKE", "MFLAGS"))}
    environment["PATH"] = f"{scratch}{os.pathsep}{environment['PATH']}"
    return subprocess.run(["make", *arguments], cwd=scratch, env=environment, capture_output=True, text=True)


@pytest.mark.parametrize("version", ["3.9.6", "3.10.14", "3.14.0"])
def test_make_stops_on_unsupported_python(scratch, version):
    python = stand_in(scratch, version)
    result = make(scratch, "repro", f"PYTHON={python}")
    assert result.returncode != 0
    message = [line for line in result.stderr.splitlines() if not line.startswith("make: ***")]
    assert message == [
        f"Python {version} found ({python}), but fraudflow needs Python 3.11 to 3.13: make repro PYTHON=python3.11"
    ]
    assert (scratch / "calls.log").read_text() == "--version\n"  # nothing but the check ran
    assert not (scratch / ".venv").exists()


@pytest.mark.parametrize("version", ["3.11.7", "3.13.0"])
def test_make_accepts_supported_python(scratch, version):
    python = stand_in(scratch, version)
    result = make(scratch, "-n", "repro", f"PYTHON={python}")  # -n: the check runs, the venv is not made
    assert result.returncode == 0, result.stderr
    assert f"{python} -m venv .venv\n" in result.stdout
    assert (scratch / "calls.log").read_text() == "--version\n"
    assert not (scratch / ".venv").exists()


def test_make_skips_check_when_venv_is_up_to_date(scratch):
    python = stand_in(scratch, "3.9.6")
    (scratch / ".venv").mkdir()
    (scratch / ".venv" / "installed").touch()
    result = make(scratch, "-n", "test", f"PYTHON={python}")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "python -m pytest\n"
    assert not (scratch / "calls.log").exists()


def test_make_checks_python3_by_default(scratch):
    stand_in(scratch, "3.9.6")  # also python3, first on PATH
    result = make(scratch, "test")
    assert result.returncode != 0
    assert "Python 3.9.6 found (python3), but fraudflow needs Python 3.11 to 3.13: make test PYTHON=python3.11\n" in (
        result.stderr
    )
    assert not (scratch / ".venv").exists()
