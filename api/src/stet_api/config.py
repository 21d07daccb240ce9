"""Settings read once from the environment (secrets from files, never from env values)."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path


class ConfigError(RuntimeError):
    """The environment does not describe a usable configuration."""


def _int(env: dict[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    return value


def _bool(env: dict[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def _database_url(env: dict[str, str]) -> str:
    path = env.get("DATABASE_URL_FILE")
    if path:
        try:
            url = Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"DATABASE_URL_FILE {path} cannot be read: {exc.strerror}") from None
        if not url:
            raise ConfigError(f"DATABASE_URL_FILE {path} is empty")
        return url
    url = env.get("DATABASE_URL", "").strip()
    if not url:
        raise ConfigError("set DATABASE_URL_FILE (preferred) or DATABASE_URL")
    return url


def _networks(env: dict[str, str], name: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    networks = []
    for item in env.get(name, "").split(","):
        if item.strip():
            try:
                networks.append(ipaddress.ip_network(item.strip()))
            except ValueError as exc:
                raise ConfigError(f"{name}: {exc}") from None
    return tuple(networks)


@dataclass(frozen=True)
class Settings:
    database_url: str = field(repr=False)
    heartbeat_interval_seconds: int = 60
    heartbeat_grace_multiplier: int = 2
    environment: str = "development"
    version: str = "unknown"
    auth_required: bool = True
    # With auth off, the client networks whose requests X-Tenant-Id alone authenticates.
    unauthenticated_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    access_log: bool = True
    rate_limit_writes_per_minute: int = 100
    db_pool_min: int = 1
    db_pool_max: int = 4
    db_connect_timeout_seconds: int = 3
    db_keepalives_idle_seconds: int = 3
    db_keepalives_interval_seconds: int = 1
    db_keepalives_count: int = 2
    db_pool_wait_seconds: int = 5
    db_busy_fail_fast_seconds: float = 1.0
    auth_cache_seconds: int = 10
    auth_unknown_key_lookups_per_second: int = 5
    rate_limit_reads_per_minute: int = 60000
    rate_limit_heartbeats_per_minute: int = 600
    history_page_max: int = 100
    max_body_bytes: int = 1024 * 1024
    trusted_proxies: frozenset[str] = frozenset({"127.0.0.1", "::1"})

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        proxies = env.get("STET_TRUSTED_PROXIES")
        settings = cls(
            database_url=_database_url(env),
            heartbeat_interval_seconds=_int(env, "STET_HEARTBEAT_INTERVAL_SECONDS", 60, minimum=1),
            heartbeat_grace_multiplier=_int(env, "STET_HEARTBEAT_GRACE_MULTIPLIER", 2, minimum=1),
            environment=env.get("STET_ENV", "development"),
            version=env.get("STET_VERSION", "unknown"),
            auth_required=_bool(env, "STET_AUTH_REQUIRED", True),
            unauthenticated_networks=_networks(env, "STET_UNAUTHENTICATED_NETWORKS"),
            access_log=_bool(env, "STET_ACCESS_LOG", True),
            rate_limit_writes_per_minute=_int(env, "STET_RATE_LIMIT_WRITES_PER_MINUTE", 100),
            db_pool_min=_int(env, "STET_DB_POOL_MIN", 1),
            db_pool_max=_int(env, "STET_DB_POOL_MAX", 4, minimum=1),
            db_connect_timeout_seconds=_int(env, "STET_DB_CONNECT_TIMEOUT_SECONDS", 3, minimum=1),
            db_keepalives_idle_seconds=_int(env, "STET_DB_KEEPALIVES_IDLE_SECONDS", 3, minimum=1),
            db_keepalives_interval_seconds=_int(env, "STET_DB_KEEPALIVES_INTERVAL_SECONDS", 1, minimum=1),
            db_keepalives_count=_int(env, "STET_DB_KEEPALIVES_COUNT", 2, minimum=1),
            db_pool_wait_seconds=_int(env, "STET_DB_POOL_WAIT_SECONDS", 5, minimum=1),
            db_busy_fail_fast_seconds=_int(env, "STET_DB_BUSY_FAIL_FAST_MS", 1000, minimum=10) / 1000,
            auth_cache_seconds=_int(env, "STET_AUTH_CACHE_SECONDS", 10, minimum=1),
            auth_unknown_key_lookups_per_second=_int(
                env, "STET_AUTH_UNKNOWN_KEY_LOOKUPS_PER_SECOND", 5, minimum=1
            ),
            rate_limit_reads_per_minute=_int(env, "STET_RATE_LIMIT_READS_PER_MINUTE", 60000),
            rate_limit_heartbeats_per_minute=_int(env, "STET_RATE_LIMIT_HEARTBEATS_PER_MINUTE", 600),
            history_page_max=_int(env, "STET_HISTORY_PAGE_MAX", 100, minimum=1),
            max_body_bytes=_int(env, "STET_MAX_BODY_BYTES", 1024 * 1024, minimum=1024),
            trusted_proxies=(
                frozenset(p.strip() for p in proxies.split(",") if p.strip())
                if proxies is not None
                else cls.trusted_proxies
            ),
        )
        if not settings.auth_required and not settings.unauthenticated_networks:
            raise ConfigError(
                "STET_AUTH_REQUIRED=false makes X-Tenant-Id the only credential: name the client"
                " networks it is accepted from in STET_UNAUTHENTICATED_NETWORKS (comma-separated CIDRs)"
            )
        if settings.db_pool_min > settings.db_pool_max:
            raise ConfigError("STET_DB_POOL_MIN must not exceed STET_DB_POOL_MAX")
        return settings
