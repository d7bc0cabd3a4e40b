"""Which handler runs which kind of queue item."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from app.engine import batching, crons, events, executor
from app.engine.worker import Handler
from domain.queue import ItemKind

if TYPE_CHECKING:
    from app.main import Services


def build_handlers(services: Services) -> dict[ItemKind, Handler]:
    return {
        ItemKind.EVENT: partial(events.handle_event, services),
        ItemKind.START: partial(executor.execute_call, services),
        ItemKind.EDGE: partial(executor.execute_call, services),
        ItemKind.SLEEP: partial(executor.execute_sleep, services),
        ItemKind.PAUSE_TIMEOUT: partial(executor.execute_pause_timeout, services),
        ItemKind.CANCEL: partial(executor.execute_timeout, services),
        ItemKind.DEBOUNCE: partial(batching.fire_debounce, services),
        ItemKind.BATCH: partial(batching.fire_batch, services),
        ItemKind.CRON: partial(crons.handle_cron, services),
    }
