"""requirements.txt picks the TensorFlow distribution each platform has."""

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
