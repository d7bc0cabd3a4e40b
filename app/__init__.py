"""Stepwell's composition root and adapters: settings, CLI, HTTP, engine, drivers, stores."""
