"""Closing the one race of event matching: an event committed while a wait was being recorded.

The event handler finds a wait through the ``pauses`` table, so an event whose processing read
that table just before the pause's transaction committed would miss it, although it arrived
after the wait began.  Right after committing a wait, the executor therefore looks at the
events of that name received since the pause's creation and resumes the run with the first
that matches.  Resuming is first-write-wins, so an event found both here and by the handler
resumes the run once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.engine.evaluation import holds
from app.engine.transitions import run_command
from app.store.events import event_json
from app.store.queue import to_dt
from domain import commands as c
from domain.effects import CreatePause

if TYPE_CHECKING:
    from app.main import Services

RECENT_EVENTS = """
SELECT internal_id, id, name, data, "user", ts, v
  FROM events
 WHERE name = %s AND received_at >= %s AND received_at <= %s
 ORDER BY received_at, internal_id
 LIMIT 1000
"""


async def catch_up_wait(services: Services, pause: CreatePause) -> None:
    async with services.db.connection() as conn:
        cur = await conn.execute(
            RECENT_EVENTS,
            (pause.event_name, to_dt(pause.created_at), to_dt(services.clock.now_ms())),
        )
        rows = await cur.fetchall()
        for row in rows:
            event = event_json(row)
            context = f"event {row[0]}, wait of step {pause.step_id!r}"
            if pause.expression and not await holds(
                pause.expression, {"async": event}, context=context
            ):
                continue
            await run_command(
                services,
                pause.run_id,
                c.ResumeWait(step_id=pause.step_id, event=event, event_id=str(row[0])),
                conn=conn,
            )
            return
