"""Adapters between the engine and the outside world: SDK calls, signing, clocks."""
