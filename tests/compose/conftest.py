"""The compose lane: compose.yaml as shipped, up in containers.

``bash scripts/compose_check.sh`` prepares everything (the engine, the
stand-in images, the project's images, Compose v2, an env file of random
secrets and free ports) and then runs this directory. The ``compose_stack``
fixture brings the stack up once for the module, with
``compose.standins.yaml`` (images that cannot be pulled here) and
``compose.test.yaml`` (the test pipelines) over compose.yaml, and takes it
down with its volumes at the end, whatever happened.

Every wait is bounded; every Docker command has a timeout.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.compose import UP_TIMEOUT, ComposeStack, read_env, wait_ready


@pytest.fixture(scope="session")
def compose_stack() -> Iterator[ComposeStack]:
    command = os.environ.get("VIDEOQ_TEST_COMPOSE")
    env_file = os.environ.get("VIDEOQ_TEST_COMPOSE_ENV_FILE")
    if not command or not env_file:
        pytest.fail(
            "VIDEOQ_TEST_COMPOSE(_ENV_FILE) are not set: run `bash scripts/compose_check.sh`"
            " (it builds the images and writes the env file)",
            pytrace=False,
        )
    stack = ComposeStack(
        compose=shlex.split(command),
        project=os.environ.get("VIDEOQ_TEST_COMPOSE_PROJECT", f"videoq-ci-{os.getpid()}"),
        env_file=Path(env_file),
        env=read_env(Path(env_file)),
    )
    try:
        # `up` returns once every service is started, each after what it
        # depends on is healthy or has completed; then the api must be ready.
        # --pull never: nothing can be pulled here, a missing image must fail.
        try:
            stack.run("up", "--detach", "--pull", "never", "--no-build", timeout=UP_TIMEOUT)
            wait_ready(stack)
        except (AssertionError, subprocess.TimeoutExpired):
            print(stack.diagnostics())
            raise
        yield stack
    finally:
        stack.run("down", "--volumes", "--remove-orphans", "--timeout", "10", check=False)
