"""HTTP controllers (Litestar): thin — parse, call one engine/service function, map the result."""
