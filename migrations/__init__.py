"""Alembic environment and date-prefixed revisions (packaged so `stepwell migrate` finds them)."""
