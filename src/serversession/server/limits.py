"""What one client can make the server do (no aiohttp needed to name it)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Limits:
    """What one client can make the server do."""

    max_body: int = 1 << 20  # bytes of a request body
    max_depth: int = 32  # XML nesting
    request_timeout: float = 30.0  # seconds to send the body and get the answer
    max_in_flight: int = 64  # requests handled at once; more get 503
    failure_delay: float = 1.0  # seconds before answering a failed login
    auth_cache_seconds: float = 60.0  # a checked password is trusted this long (bcrypt is slow)
