"""Fault tests: kill -9, restarts, misbehaving SDK apps."""
