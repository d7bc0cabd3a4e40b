"""The engine: the worker loop, and the handlers it dispatches queue items to by kind."""
