"""The api, janitor and migrate images carry no video stack (PyAV, OpenCV,
NumPy: the ``video`` extra, only the worker's image installs it). Each check
runs in a fresh interpreter in which importing those raises ImportError, as
it would in those images, so an import that creeps in on their path fails here
rather than in a container."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.unit

# Installed before anything else runs: the video stack is simply not there.
_BLOCK = textwrap.dedent(
    """
    import sys

    BLOCKED = {"av", "cv2", "numpy"}

    class NoVideoStack:
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in BLOCKED:
                raise ImportError(f"{name} is not installed (blocked by the test)")
            return None

    sys.meta_path.insert(0, NoVideoStack())

    def assert_no_video_stack():
        loaded = sorted(BLOCKED & {m.partition(".")[0] for m in sys.modules})
        assert not loaded, loaded
    """
)


def _run(code: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", _BLOCK + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr


def test_the_api_app_is_created_with_every_pipeline_name():
    _run(
        """
        from services.api.app import create_app
        from services.api.main import main
        from shared.settings import Settings

        document = create_app(Settings(auth_disabled=True)).openapi()
        body = document["paths"]["/video/submit"]["post"]["requestBody"]
        form = body["content"]["multipart/form-data"]["schema"]
        names = set(form["properties"]["pipeline"]["enum"])
        assert {"basic", "noop", "full", "ocr"} <= names, names
        assert_no_video_stack()
        """
    )


def test_a_plugin_that_subclasses_analyzer_loads_in_the_api():
    # The api loads VIDEOQ_PLUGINS for their pipelines' names; a plugin's
    # module defines its Analyzer subclasses at import time.
    _run(
        """
        from services.api.app import create_app
        from shared.settings import Settings

        settings = Settings(auth_disabled=True, plugins=("tests.support.plugins:register",))
        document = create_app(settings).openapi()
        body = document["paths"]["/video/submit"]["post"]["requestBody"]
        form = body["content"]["multipart/form-data"]["schema"]
        assert "slow" in form["properties"]["pipeline"]["enum"]
        assert_no_video_stack()
        """
    )


def test_the_janitor_and_migrate_need_no_video_stack():
    _run(
        """
        from services.cli.main import main as cli
        from services.janitor.main import main, start
        from shared.backends import open_backends

        assert_no_video_stack()
        """
    )


def test_the_blocker_works_an_analyzer_needs_the_video_stack():
    # The names are there without the stack; creating an analyzer is where it is needed.
    _run(
        """
        from shared.pipeline import load_registry

        pipeline = load_registry(entry_point_group=None).get("basic")
        try:
            pipeline.create()
        except ImportError as exc:
            assert "blocked by the test" in str(exc), exc
        else:
            raise AssertionError("the basic analyzer was created without OpenCV")
        """
    )
