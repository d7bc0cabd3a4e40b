"""``python -m app`` is the ``stepwell`` command."""

from app.cli import main

main()
