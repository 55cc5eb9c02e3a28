"""Messages of `samkit.distributed` that must be importable without Ray."""

from __future__ import annotations

RAY_MISSING = (
    "distributed runs need Ray Data, which is not installed: pip install 'samkit[ray]' "
    "(the [ray] extra: ray[data] and pyarrow)"
)
