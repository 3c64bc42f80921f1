from __future__ import annotations

import pytest

from tests.support.env import require_netns


@pytest.fixture(autouse=True)
def _integration_needs_netns(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("integration") is not None:
        require_netns()
