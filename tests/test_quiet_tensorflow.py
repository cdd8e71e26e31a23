"""quiet_tensorflow(): TensorFlow's start-up lines go, everything else printed on import stays."""

import os
import subprocess
import sys

import pytest
from conftest import python_environment

from fraudflow.common import ABSL_NOTICE, quiet_tensorflow

ONEDNN = "I0000 00:00:1795850485.842253   11538 port.cc:153] oneDNN custom operations are on. You may see ..."
CPP_WARNING = "W0000 00:00:1795850486.000001   11538 some_op.cc:12] a C++ warning"
CPP_ERROR = "E0000 00:00:1795850486.000002   11538 some_op.cc:34] a C++ error"


def print_on_import():
    """What `import tensorflow` may write on fd 2, with a Python warning between (fd 2, as outside pytest)."""
    os.write(2, f"{ABSL_NOTICE}\n{ONEDNN}\nUserWarning: a Python warning\n".encode())
    os.write(2, f"{CPP_WARNING}\n{CPP_ERROR}\n{ABSL_NOTICE}\n{ONEDNN}\n".encode())


@pytest.mark.parametrize(
    "level, kept",
    [
        (None, ["UserWarning: a Python warning"]),  # default 3
        ("2", ["UserWarning: a Python warning", CPP_ERROR]),
        ("1", ["UserWarning: a Python warning", CPP_WARNING, CPP_ERROR]),
        ("0", [ABSL_NOTICE, ONEDNN, "UserWarning: a Python warning", CPP_WARNING, CPP_ERROR, ABSL_NOTICE, ONEDNN]),
    ],
)
def test_keeps_what_tf_cpp_min_log_level_shows(level, kept, capfd, monkeypatch):
    if level is None:
        monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    else:
        monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", level)
    os.write(2, b"before\n")
    with quiet_tensorflow():
        print_on_import()
    os.write(2, b"after\n")
    assert capfd.readouterr().err.splitlines() == ["before", *kept, "after"]
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == (level or "3")


def test_stderr_is_restored_when_the_import_fails(capfd):
    with pytest.raises(ImportError), quiet_tensorflow():
        os.write(2, f"{ONEDNN}\nreal trouble\n".encode())
        raise ImportError("no tensorflow")
    os.write(2, b"after\n")
    assert capfd.readouterr().err.splitlines() == ["real trouble", "after"]


def test_importing_tensorflow_prints_nothing_but_warnings():
    code = "\n".join(
        [
            "import warnings",
            "from fraudflow.common import quiet_tensorflow",
            "with quiet_tensorflow():",
            "    import keras",
            "    import tensorflow",
            "    warnings.warn('a real warning')",
        ]
    )
    env = {k: v for k, v in python_environment().items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert result.stderr.splitlines() == ["<string>:6: UserWarning: a real warning"]
