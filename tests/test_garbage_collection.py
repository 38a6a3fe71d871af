"""While the app serves, start-up objects are frozen and young collections are rarer; shutdown undoes both."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator

import pytest

from bookchat.config import Settings
from bookchat.main import create_app
from bookchat.runtime import garbage_collection
from bookchat.runtime.garbage_collection import YOUNG_GENERATION_THRESHOLD, serving_garbage_collection

DEFAULT_THRESHOLD = (700, 10, 10)


@pytest.fixture
def idle_collector(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The collector as if no app were serving in this process (a session-wide test app may be)."""
    threshold, frozen = gc.get_threshold(), gc.get_freeze_count() > 0
    monkeypatch.setattr(garbage_collection, "_serving", 0)
    monkeypatch.setattr(garbage_collection, "_threshold_before", None)
    gc.set_threshold(*DEFAULT_THRESHOLD)
    gc.unfreeze()
    yield
    gc.set_threshold(*threshold)
    if frozen:
        gc.freeze()


@pytest.mark.usefixtures("idle_collector")
def test_settings_apply_while_serving_and_the_last_user_restores_them() -> None:
    alive = [["kept across the freeze"]]
    assert gc.is_tracked(alive[0])
    with serving_garbage_collection():
        assert gc.get_threshold() == (YOUNG_GENERATION_THRESHOLD, *DEFAULT_THRESHOLD[1:])
        assert gc.get_freeze_count() > 0
        assert not any(obj is alive[0] for obj in gc.get_objects())  # frozen: no longer scanned
        with serving_garbage_collection():  # a second app in the same process
            pass
        assert gc.get_threshold()[0] == YOUNG_GENERATION_THRESHOLD
        assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == DEFAULT_THRESHOLD
    assert gc.get_freeze_count() == 0
    assert any(obj is alive[0] for obj in gc.get_objects())


@pytest.mark.usefixtures("idle_collector")
async def test_the_app_lifespan_serves_with_them(make_settings: Callable[..., Settings]) -> None:
    app = create_app(make_settings())
    async with app.router.lifespan_context(app):
        assert gc.get_threshold()[0] == YOUNG_GENERATION_THRESHOLD
        assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == DEFAULT_THRESHOLD
    assert gc.get_freeze_count() == 0
