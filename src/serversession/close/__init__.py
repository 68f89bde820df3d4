"""Closing sessions and open files (DESIGN.md 2c): selectors, one close, its report; the CLI's part.

The sources do the closing (sources/closing.py); this package decides what a command or an
API call names, asks before closing, and reports what became of each.
"""

from __future__ import annotations

from .run import CloseReport, Confirm, close_files, close_sessions
from .select import Selection

__all__ = ["CloseReport", "Confirm", "Selection", "close_files", "close_sessions"]
