"""Apps the fault tests run: a slow official-SDK app and a misbehaving fake SDK."""
