"""What one client can make the server do (no aiohttp needed to name it)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field


@dataclass
class Limits:
    """What one client can make the server do."""

    max_body: int = 1 << 20  # bytes of a request body
    max_depth: int = 32  # XML nesting
    request_timeout: float = 30.0  # seconds to send the body and get the answer
    max_in_flight: int = 64  # requests handled at once (more get 503); a user may hold half
    failure_delay: float = 1.0  # seconds before answering a failed login (or a refused one)
    auth_cache_seconds: float = 60.0  # a checked password is trusted this long (bcrypt is slow)
    workers: int = 4  # threads parsing requests and running operations; a user may hold half
    max_abandoned: int = 4  # timed-out operations still running before new work is refused (503)
    query_processes: int = 2  # child processes evaluating WQL queries (killed when a request is abandoned)
    # threads checking passwords (bcrypt, PAM): half the CPUs, the other half keeps serving logged-in users
    login_workers: int = field(default_factory=lambda: max(1, (os.cpu_count() or 2) // 2))
    max_pending_logins: int = 32  # password checks waiting or running; more are refused at once (503)
