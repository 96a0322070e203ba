"""The suite's own rules: every test that starts Azurite is marked, so ``-m "not azurite"`` starts none."""

from __future__ import annotations

import pytest

from tests.azurite import Azurite


def test_an_unmarked_test_cannot_start_azurite():
    with pytest.raises(RuntimeError, match=r"mark it @pytest.mark.azurite"):
        Azurite().start()


def test_every_test_using_the_azurite_fixture_is_marked(request):
    """Whatever ``-m`` selected: a selected test needing the emulator carries the marker, so
    ``-m "not azurite"`` selects none of them and the session fixture never starts."""
    unmarked = [item.nodeid for item in request.session.items
                if "azurite" in getattr(item, "fixturenames", ()) and item.get_closest_marker("azurite") is None]
    assert unmarked == []
    assert request.node.get_closest_marker("azurite") is None
