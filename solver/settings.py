"""Typed settings: environment variables over `config/*.toml`, validated at start.

Load with `load_settings()` from a composition root; nothing reads settings at import time.
Env vars use the `SOLVER_` prefix and `__` for nesting (`SOLVER_AUTH__JWT_SECRET`).
`SOLVER_CONFIG` names the TOML file(s), comma separated, later files winning.
`DATABASE_URL` and `REDIS_URL` are also read without prefix, as operators expect.
"""

from __future__ import annotations

import ipaddress
import os
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from solver.core.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = ROOT / "config" / "local.toml"
DEV_JWT_SECRET = "dev-only-insecure-jwt-secret-change-me-000000"  # noqa: S105 - refused outside dev
ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"


class SymbolConfig(BaseModel):
    """One market. Percent-like values are fractions (0.01 = 1 %)."""

    symbol_id: int = Field(ge=1)
    name: str = Field(min_length=1, max_length=32)  # market name, e.g. BTCUSDT
    symbol: str  # base, e.g. BTC
    asset: str = "USDT"
    price_precision: int = Field(ge=0, le=18)
    quantity_precision: int = Field(ge=0, le=18)
    is_valid: bool = True
    rfq_allowed: bool = True
    maintenance_ratio: Decimal = Field(gt=0, lt=1)  # cn of trading-rules.md §1
    max_leverage_cap: int | None = Field(default=None, ge=1)
    party_bmm_percent: Decimal = Field(default=Decimal(0), ge=0, le=100)
    min_acceptable_quote_value: Decimal = Field(ge=0)
    min_acceptable_portion_lf: Decimal = Field(ge=0, le=1)
    trading_fee: Decimal = Field(ge=0, lt=1)
    max_funding_rate: Decimal = Field(default=Decimal(200), ge=0)
    max_notional_value: Decimal = Field(gt=0)  # largest single position, USD
    notional_cap: Decimal = Field(gt=0)  # open interest cap for the symbol, USD
    hedger_fee_open: Decimal = Field(default=Decimal(0), ge=0, lt=1)
    hedger_fee_close: Decimal = Field(default=Decimal(0), ge=0, lt=1)
    max_price_deviation: Decimal = Field(default=Decimal("0.05"), gt=0, lt=1)
    funding_rate_epoch_duration: int = Field(default=28800, ge=1)
    reference_price: Decimal | None = Field(default=None, gt=0)  # replay feed start (dev)

    @field_validator("name", "symbol", "asset")
    @classmethod
    def _upper(cls, v: str) -> str:
        if not v.isalnum():
            raise ValueError("must be letters and digits only")
        return v.upper()


class ChainSettings(BaseModel):
    chain_id: int = Field(default=31337, ge=1)
    rpc_urls: list[str] = Field(default_factory=lambda: ["http://127.0.0.1:8545"])
    multi_account_address: str = ZERO_ADDRESS
    symmio_address: str = ZERO_ADDRESS
    collateral_address: str = ZERO_ADDRESS
    solver_address: str = ZERO_ADDRESS  # PartyB
    # Every PartyB address the worker signs for, one lane each (default: [solver_address]). An
    # account always maps to the same lane (solver.quotes.outbox.lane_for), so users delegate to
    # each of them and each is a registered PartyB with collateral.
    party_b_addresses: list[str] = Field(default_factory=list)
    confirmations: int = Field(default=1, ge=0)
    start_block: int = Field(default=0, ge=0)
    owner_cache_ttl_s: int = Field(default=300, ge=0)

    @field_validator("rpc_urls")
    @classmethod
    def _rpcs(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("at least one RPC URL is required")
        for url in v:
            if not url.startswith(("http://", "https://", "ws://", "wss://")):
                raise ValueError(f"RPC URL must be http(s) or ws(s): {url!r}")
        return v

    @field_validator("multi_account_address", "symmio_address", "collateral_address", "solver_address")
    @classmethod
    def _address(cls, v: str) -> str:
        return _check_address(v)

    @field_validator("party_b_addresses")
    @classmethod
    def _addresses(cls, v: list[str]) -> list[str]:
        return [_check_address(a) for a in v]

    @property
    def lanes(self) -> list[str]:
        """PartyB / signer address of each lane, lane index = list index."""
        return list(self.party_b_addresses) or [self.solver_address]


def _check_address(v: str) -> str:
    if not (v.startswith("0x") and len(v) == 42):
        raise ValueError(f"not an address: {v!r}")
    try:
        int(v, 16)
    except ValueError as exc:
        raise ValueError(f"not an address: {v!r}") from exc
    return v


class AuthSettings(BaseModel):
    jwt_secret: SecretStr = SecretStr(DEV_JWT_SECRET)
    jwt_algorithm: Literal["HS256"] = "HS256"
    jwt_max_lifetime_s: int = Field(default=30 * 86400, ge=60)
    allowed_domains: list[str] = Field(default_factory=lambda: ["localhost"])
    public_base_url: str = "http://localhost:8000"
    nonce_ttl_s: int = Field(default=600, ge=10)
    clock_skew_s: int = Field(default=60, ge=0)

    @field_validator("public_base_url")
    @classmethod
    def _base(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("public_base_url must start with http:// or https://")
        return v.rstrip("/")


class RiskSettings(BaseModel):
    max_pending_instant_opens: int = Field(default=10, ge=1)
    max_open_positions: int = Field(default=100, ge=1)
    total_notional_cap: Decimal = Field(default=Decimal(10_000_000), gt=0)
    max_price_age_s: Decimal = Field(default=Decimal(5), gt=0)
    close_slippage: Decimal = Field(default=Decimal("0.01"), gt=0, lt=1)


class HealthSettings(BaseModel):
    """Account health and liquidation flags (trading-rules.md §6): the engine's health loop
    (solver.risk.health_engine; the bands are explained in solver.risk.health_book)."""

    consumer_group: str = Field(default="health", min_length=1)  # on the price stream
    read_count: int = Field(default=500, ge=1)
    read_block_ms: int = Field(default=200, ge=1, le=10_000)
    poll_interval_s: float = Field(default=1, gt=0, le=60)  # quote mirror changes, balances, sweeps
    mirror_overlap_s: float = Field(default=10, ge=0)  # re-read rows modified this long before the last seen
    full_reload_s: float = Field(default=300, gt=0)  # reconcile the whole book with the mirror
    min_band: Decimal = Field(default=Decimal("0.005"), gt=0, lt=1)  # other-symbol move a key covers, at least
    max_band: Decimal = Field(default=Decimal("0.2"), gt=0, lt=1)  # and at most
    balance_batch: int = Field(default=50, ge=0)  # allocated balances re-read per poll (flagged first)
    balance_concurrency: int = Field(default=16, ge=1)  # chain reads in flight
    snapshot_batch: int = Field(default=500, ge=0)  # health hashes refreshed per poll, round robin


class PricingSettings(BaseModel):
    """The price feed of `solver engine` (trading-rules.md §5). `binance`: the USDⓈ-M futures
    mark-price stream (`.../stream?streams=!markPrice@arr@1s`, or a raw `/ws` URL, which gets a
    SUBSCRIBE); `replay`: a seeded random walk from each symbol's reference_price, or the CSV
    `replay_csv` (ts,symbol,price); `oracle`: poll the oracle (oracle.muon_urls) for each symbol."""

    source: Literal["binance", "replay", "oracle"] = "replay"
    binance_ws_url: str = "wss://fstream.binance.com/stream?streams=!markPrice@arr@1s"
    silence_timeout_s: float = Field(default=5, gt=0)  # no frame this long: the socket is dead
    reconnect_min_s: float = Field(default=0.5, gt=0)  # first backoff; doubles, with jitter
    reconnect_max_s: float = Field(default=30, gt=0)  # backoff cap
    max_clock_skew_s: float = Field(default=5, ge=0)  # drop ticks dated further in the future
    replay_interval_s: float = Field(default=1, gt=0)
    replay_seed: int = 7
    replay_csv: Path | None = None
    oracle_poll_s: float = Field(default=1, gt=0)
    stream_maxlen: int = Field(default=100_000, ge=1000)  # approximate length of the price stream

    @field_validator("binance_ws_url")
    @classmethod
    def _ws(cls, v: str) -> str:
        if not v.startswith(("ws://", "wss://")):
            raise ValueError("binance_ws_url must start with ws:// or wss://")
        return v

    @model_validator(mode="after")
    def _backoff(self) -> PricingSettings:
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("reconnect_max_s must be at least reconnect_min_s")
        return self


class TriggerSettings(BaseModel):
    """Stop loss / take profit (trading-rules.md §4): the API's checks and the engine's trigger loop."""

    timestamp_tolerance_s: int = Field(default=60, ge=1)  # |request timestamp - now| allowed (replay)
    max_close_attempts: int = Field(default=3, ge=1, le=20)  # closes tried (fresh price each) before `failed`
    poll_interval_s: float = Field(default=0.5, gt=0, le=60)  # new/cancelled orders, arming, close outcomes
    full_reload_s: float = Field(default=60, gt=0)  # rebuild the books from Postgres this often
    chain_sweep_batch: int = Field(default=20, ge=0)  # armed positions re-read on chain per poll
    consumer_group: str = Field(default="triggers", min_length=1)  # on the price stream
    read_block_ms: int = Field(default=200, ge=1, le=10_000)


class StrategySettings(BaseModel):
    """Strategy orders, LIMIT and DCA (trading-rules.md §3): the engine's strategy loop."""

    poll_interval_s: float = Field(default=0.5, gt=0, le=60)  # new/cancelled orders, sub-order outcomes
    suborder_deadline_s: int = Field(default=120, ge=10, le=86_400)  # the deadline of each sub-order's quote
    concurrency: int = Field(default=8, ge=1, le=256)  # orders stepped at once
    consumer_group: str = Field(default="strategies", min_length=1)  # on the price stream
    read_block_ms: int = Field(default=200, ge=1, le=10_000)


class WorkerSettings(BaseModel):
    """The chain worker. Keys are secrets: give them by env (SOLVER_WORKER__SIGNER_PRIVATE_KEYS
    as a JSON list), in the order of chain.lanes."""

    signer_private_keys: list[SecretStr] = Field(default_factory=list)
    poll_interval_s: float = Field(default=0.1, gt=0, le=10)
    stuck_after_s: float = Field(default=20, gt=0)  # no receipt this long: replace with a fee bump
    rebroadcast_after_s: float = Field(default=5, gt=0)  # re-send the same signed tx this often
    fee_bump_percent: int = Field(default=15, ge=13, le=200)  # nodes need >= 12.5 % to replace
    max_fee_per_gas_gwei: Decimal = Field(default=Decimal(500), gt=0)  # never pay more than this
    gas_multiplier: Decimal = Field(default=Decimal("1.5"), ge=1, le=5)
    max_batch: int = Field(default=10, ge=1, le=255)  # opens of one account per _call
    max_in_flight: int = Field(default=64, ge=1, le=1024)  # unconfirmed txs per lane
    open_deadline_s: int = Field(default=300, ge=10)  # default deadline of closes the solver sends
    solver_topup: Decimal = Field(default=Decimal(0), ge=0)  # extra allocateForPartyB beyond the need


class OracleSettings(BaseModel):
    muon_urls: list[str] = Field(default_factory=lambda: ["http://127.0.0.1:8546"])
    muon_app_id: int = 0
    app_name: str = "symmio"
    # Keys of the local oracle (`solver oracle`), hex; it refuses to start without them.
    schnorr_secret: SecretStr | None = None
    gateway_private_key: SecretStr | None = None
    host: str = "127.0.0.1"
    port: int = Field(default=8546, ge=1, le=65535)


class WsSettings(BaseModel):
    """WebSocket channels of the API (http-api.md §7)."""

    upnl_interval_s: float = Field(default=2, gt=0, le=60)  # upnl-ws push period
    upnl_cache_ttl_s: float = Field(default=1, gt=0, le=30)  # one account's balances, shared by replicas
    funding_interval_s: float = Field(default=5, gt=0, le=300)  # funding-rate-ws push period
    mark_interval_s: float = Field(default=1, gt=0, le=60)  # mark price stream period (`@1s` streams)
    max_accounts: int = Field(default=100, ge=1, le=10_000)  # accounts one position-state-ws3 client follows
    send_queue: int = Field(default=1000, ge=10)  # pushes buffered for a slow client before it is dropped


class ApiSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    prefix: str | None = None  # e.g. "/v1/31337a/0xMultiAccount"; routes are also served at "/"
    cors_origins: list[str] = Field(default_factory=lambda: ["http://localhost:3000"])
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, v: str | None) -> str | None:
        if v is None or v.strip("/") == "":
            return None
        return "/" + v.strip("/")


class RateLimitSettings(BaseModel):
    """Request limits of the API per client IP and per account (solver.web.rate_limit).

    Fixed one-minute windows counted in Redis, so every replica shares them. A request counts for
    its IP and, with a valid Bearer token, for the token's account as well; `/login` and
    `/nonce/{account}` count in a third, smaller bucket per IP. Over a limit: 429 RATE_LIMITED with
    `Retry-After`. Redis unreachable: requests pass (fail open) and a warning is logged.

    The client IP is the connection's peer (uvicorn already resolves X-Forwarded-For from the peers
    in its FORWARDED_ALLOW_IPS, 127.0.0.1 by default). `trusted_proxies` (IPs or CIDRs) makes this
    middleware read X-Forwarded-For too, when the peer is one of them; never list open networks.
    IPv6 clients are counted per /64 (one host usually owns the whole /64).
    """

    enabled: bool = True
    per_ip_per_minute: int = Field(default=1200, ge=1)
    per_account_per_minute: int = Field(default=600, ge=1)
    login_per_ip_per_minute: int = Field(default=60, ge=1)  # POST /login and GET /nonce/{account}
    exempt_paths: list[str] = Field(default_factory=lambda: ["/health", "/readyz", "/metrics"])
    trusted_proxies: list[str] = Field(default_factory=list)
    redis_timeout_s: float = Field(default=0.25, gt=0, le=5)  # then fail open

    @field_validator("exempt_paths")
    @classmethod
    def _paths(cls, v: list[str]) -> list[str]:
        return ["/" + p.strip("/") for p in v]

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, v: list[str]) -> list[str]:
        for net in v:
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError as exc:
                raise ValueError(f"not an IP address or network: {net!r}") from exc
        return v


class ObservabilitySettings(BaseModel):
    """GET /metrics, loop heartbeats and readiness (solver.observability, README "Observability")."""

    heartbeat_interval_s: float = Field(default=1, gt=0, le=60)  # loops' beats written to Redis this often
    state_interval_s: float = Field(default=5, gt=0, le=300)  # lane nonces published (2 RPC reads per lane)
    loop_down_after_s: float = Field(default=30, gt=0)  # solver_loop_up is 0 after this long without a beat
    forget_after_s: int = Field(default=86_400, ge=60)  # a loop silent this long disappears from /metrics
    scrape_timeout_s: float = Field(default=2, gt=0, le=30)  # each source of a /metrics scrape
    probe_timeout_s: float = Field(default=2, gt=0, le=30)  # each /readyz probe (they run concurrently)
    ready_requires_fresh_prices: bool = False  # /readyz fails (503) while a symbol's price is not fresh
    metrics_token: SecretStr | None = None  # when set, GET /metrics wants `Authorization: Bearer <token>`


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SOLVER_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    env: Literal["dev", "test", "prod"] = "dev"
    database_url: str = Field(
        default="postgresql+psycopg://postgres@127.0.0.1:5432/solver",
        validation_alias=AliasChoices("SOLVER_DATABASE_URL", "DATABASE_URL", "database_url"),
    )
    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        validation_alias=AliasChoices("SOLVER_REDIS_URL", "REDIS_URL", "redis_url"),
    )
    redis_prefix: str = "solver:"
    log_level: str = "INFO"
    chain: ChainSettings = Field(default_factory=ChainSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    risk: RiskSettings = Field(default_factory=RiskSettings)
    health: HealthSettings = Field(default_factory=HealthSettings)
    oracle: OracleSettings = Field(default_factory=OracleSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    triggers: TriggerSettings = Field(default_factory=TriggerSettings)
    strategy: StrategySettings = Field(default_factory=StrategySettings)
    pricing: PricingSettings = Field(default_factory=PricingSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    ws: WsSettings = Field(default_factory=WsSettings)
    ratelimit: RateLimitSettings = Field(default_factory=RateLimitSettings)
    observability: ObservabilitySettings = Field(default_factory=ObservabilitySettings)
    symbols: list[SymbolConfig] = Field(default_factory=list)

    @field_validator("database_url")
    @classmethod
    def _db(cls, v: str) -> str:
        if v.startswith("postgresql://") or v.startswith("postgres://"):
            v = "postgresql+psycopg://" + v.split("://", 1)[1]
        if not v.startswith("postgresql+psycopg://"):
            raise ValueError("database_url must be a PostgreSQL URL (postgresql://...)")
        return v

    @model_validator(mode="after")
    def _checks(self) -> Settings:
        ids = [s.symbol_id for s in self.symbols]
        names = [s.name for s in self.symbols]
        if len(set(ids)) != len(ids):
            raise ValueError("symbol ids must be unique")
        if len(set(names)) != len(names):
            raise ValueError("symbol names must be unique")
        if self.env != "dev":
            secret = self.auth.jwt_secret.get_secret_value()
            if secret == DEV_JWT_SECRET or len(secret) < 32:
                raise ValueError(
                    "auth.jwt_secret must be set to a random value of at least 32 characters "
                    "outside dev (SOLVER_AUTH__JWT_SECRET)"
                )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        files = _config_files()
        toml = TomlConfigSettingsSource(settings_cls, toml_file=files) if files else None
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml is not None:
            sources.append(toml)
        return tuple(sources)

    def symbol(self, key: str | int) -> SymbolConfig | None:
        for s in self.symbols:
            if (isinstance(key, int) and s.symbol_id == key) or (isinstance(key, str) and s.name == key.upper()):
                return s
        return None


def _config_files() -> list[Path]:
    raw = os.environ.get("SOLVER_CONFIG")
    if raw is None:
        return [DEFAULT_CONFIG] if DEFAULT_CONFIG.exists() else []
    files = [Path(p.strip()) for p in raw.split(",") if p.strip()]
    for f in files:
        if not f.exists():
            raise ConfigError(f"config file not found: {f}")
    return files


def load_settings(**overrides: Any) -> Settings:
    """Build and validate settings; raise ConfigError with a readable list of problems."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "settings"
            lines.append(f"  {where}: {err['msg']}")
        raise ConfigError("invalid settings:\n" + "\n".join(lines)) from exc
