"""Helpers shared by the test suites: `httpserver.FaultServer`, a misbehaving HTTP server."""
