"""The embedded HTTP listener (aiohttp): health, readiness, status, and the edges' routes."""

from .server import HTTPServer

__all__ = ["HTTPServer"]
