"""Fixtures of the deploy tests: the built overlays and the tools, found or installed once per session."""

from __future__ import annotations

from typing import Any

import pytest
from deploy_helpers import OVERLAYS, ToolMissing, build, kustomize_command, promtool


@pytest.fixture(scope="session")
def built() -> dict[str, list[dict[str, Any]]]:
    try:
        kustomize_command()
    except ToolMissing as error:
        pytest.fail(str(error))
    return {overlay: build(overlay) for overlay in OVERLAYS}


@pytest.fixture(scope="session")
def promtool_path() -> str:
    try:
        return promtool()
    except ToolMissing as error:
        pytest.fail(str(error))
