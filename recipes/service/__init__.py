"""The HTTP / WebSocket profiling service (app.py), run by serve.py."""
