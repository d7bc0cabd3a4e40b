"""Which handler runs which kind of queue item.  Kinds without a handler yet are requeued."""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.engine.worker import Handler
from domain.queue import ItemKind

if TYPE_CHECKING:
    from app.main import Services


def build_handlers(services: Services) -> dict[ItemKind, Handler]:
    return {}
