"""Read models built from run history: view tables, pure ``apply`` functions, rebuild.

Imports ``domain`` and SQLAlchemy, never ``app`` (an import-linter contract enforces it).
"""
