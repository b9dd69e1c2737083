"""Shared fixtures."""

from __future__ import annotations

import structlog

# Tests read log lines only where they ask for them; keep the rest quiet and cheap.
structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
