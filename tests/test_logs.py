"""The kit's INFO messages reach users once, and never override an application's logging."""
from __future__ import annotations

import subprocess
import sys

import pytest

from t2lib.paths import REPO_ROOT


def stderr_of(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True,
                          text=True, check=True, timeout=60).stderr


@pytest.mark.parametrize("logger", ["t2lib.core.models", "fishfarm.data"])
def test_info_messages_are_shown_after_importing_t2lib(logger):
    code = f"import logging, t2lib; logging.getLogger({logger!r}).info('converting x (once)')"
    assert stderr_of(code) == f"{logger}: converting x (once)\n"


def test_configuring_the_root_logger_later_does_not_print_twice():
    out = stderr_of("import logging, t2lib; logging.basicConfig(level=logging.INFO); "
                    "logging.getLogger('t2lib.core.svd').info('loading SVD cache')")
    assert out.count("loading SVD cache") == 1


@pytest.mark.parametrize("setup", [
    "logging.basicConfig(level=logging.WARNING)",  # the application configured logging first
    "logging.getLogger('t2lib').addHandler(logging.NullHandler())",  # a library user's silence
])
def test_an_applications_own_configuration_wins(setup):
    out = stderr_of(f"import logging; {setup}; import t2lib; "
                    "logging.getLogger('t2lib.core.models').info('converting x (once)')")
    assert "converting" not in out


def test_configure_logging_adds_its_handler_once():
    code = ("import logging, t2lib; from t2lib.logs import configure_logging; "
            "print(configure_logging(), len(logging.getLogger('t2lib').handlers))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True,
                         text=True, check=True, timeout=60).stdout
    assert out.strip() == "[] 1"
