"""The Postgres adapter: connection pool, history, queue, pauses, registry, events."""
