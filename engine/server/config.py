"""Settings of `geosleuth serve`."""

from __future__ import annotations

from dataclasses import dataclass, field

SERVER_TOKENS_ENV = "GEOSLEUTH_SERVER_TOKENS"  # comma-separated: one per bot


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"  # put a reverse proxy with TLS in front to serve beyond the host
    port: int = 8470
    # Bearer tokens the server accepts; prefer $GEOSLEUTH_SERVER_TOKENS. Never in a repr.
    tokens: tuple[str, ...] = field(default=(), repr=False)
    retry_after_s: int = 2  # told to a client refused because the queue is full
    # Answers' photos kept in memory for GET /v1/evidence/{id}; 0 s keeps none.
    evidence_ttl_s: int = 900
    evidence_store_mb: int = 256
