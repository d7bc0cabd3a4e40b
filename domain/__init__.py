"""Stepwell's pure model: ids, history events, the run state machine, flow-control maths, ports.

Nothing here performs I/O or reads a clock; the clock is an argument.  The package imports only
the standard library and tiny pure helpers (a ULID library), and an import-linter contract in
``pyproject.toml`` keeps it that way.
"""
