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
    retry_after_s: int = 2  # told to a client refused because the server is full
    # Answers' photos kept in memory for GET /v1/evidence/{id}; 0 s keeps none.
    evidence_ttl_s: int = 900
    evidence_store_mb: int = 256
    # A client may ask to verify more candidates than [engine.search] top_k, up to this many:
    # each one costs a verification, so one client cannot make every photo cost 10 times more.
    max_top_k: int = 30
    # Photos (or video frames) one POST /v1/fuse may join into an album answer.
    max_album_photos: int = 16
    # Photos being received at once (each up to the decode limit in memory); one more is 503.
    max_uploads: int = 8
    upload_timeout_s: float = 30.0  # a body not received by then is cut off (408)
    # Evidence and reference pictures are drawn beside the engine, by this many threads;
    # past `picture_queue` drawn or waiting, a request is 503 rather than an ever longer wait.
    picture_workers: int = 1
    picture_queue: int = 4
    health_probe_s: float = 2.0  # how often the vector store is asked; /v1/health never waits
