"""One typed settings object, read once from the environment (12-factor).

Secrets are `SecretStr` so they never appear in reprs or logs. In production (`RWA_ENV=production`)
`Settings.check_production()` refuses placeholder or missing secrets, naming the variable.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from decimal import Decimal
from enum import Enum
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, PrivateAttr, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PLACEHOLDER_MARKERS = ("change-me", "changeme", "placeholder", "dev-only", "example", "secret")
# anvil's/hardhat's default mnemonic: every key it derives is public
WELL_KNOWN_MNEMONICS = frozenset({"test test test test test test test test test test test junk"})
# the first accounts of that mnemonic (anvil's funded dev accounts): anyone can sign with them
WELL_KNOWN_PRIVATE_KEYS = frozenset(
    {
        "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
        "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
        "5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    }
)


class Environment(str, Enum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


class ConfigError(Exception):
    """The configuration cannot be used; the message names the variable."""


# Vite, Create React App / Next.js and Angular dev servers, on localhost and 127.0.0.1
DEV_FRONTEND_ORIGINS = tuple(
    f"http://{host}:{port}" for host in ("localhost", "127.0.0.1") for port in (3000, 4200, 5173)
)


# EIP-4361's domain: an RFC 3986 authority without userinfo (a DNS name or IPv4 address, an optional port)
SIWE_DOMAIN = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.\-]{0,251}[A-Za-z0-9])?(?::\d{1,5})?$")

# RFC 2606 / 6761 names that never reach a real site: a production SIWE_DOMAIN among them is a copied placeholder
PLACEHOLDER_HOSTS = ("example.com", "example.net", "example.org", "example", "invalid", "localhost")


def _placeholder_host(domain: str) -> bool:
    """`domain` is host[:port], lower-cased by the validator."""
    host = domain.split(":", 1)[0]
    if any(host == name or host.endswith("." + name) for name in PLACEHOLDER_HOSTS):
        return True
    return host.startswith("127.") or host == "0.0.0.0"


# variables named per chain (or their chain-less fallback), read by Settings.model_post_init
_PER_CHAIN = re.compile(
    r"^(RPC_URLS_\d+|RWA_FINALITY_DEPTH_\d+|RWA_AGENT_FEE_CAP_WEI_\d+|RWA_AGENT_MIN_BALANCE_WEI_\d+"
    r"|(AGENT|TREASURY)_(PRIVATE_KEY_\d+|SIGNER_URL(_\d+)?|SIGNER_ADDRESS(_\d+)?))$"
)
_PER_CHAIN_INTS = ("RWA_FINALITY_DEPTH_", "RWA_AGENT_FEE_CAP_WEI_", "RWA_AGENT_MIN_BALANCE_WEI_")


def _int_var(name: str, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise ConfigError(f"{name} must be a number >= 0, got {raw!r}")
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=None, extra="ignore", case_sensitive=False)
    _per_chain: dict[str, str] = PrivateAttr(default_factory=dict)
    _rpc: dict[int, list[str]] = PrivateAttr(default_factory=dict)
    _chain_ints: dict[str, dict[int, int]] = PrivateAttr(default_factory=dict)

    env: Environment = Field(Environment.DEVELOPMENT, alias="RWA_ENV")
    data_dir: str = Field(".rwa", alias="RWA_DATA_DIR")

    database_url: str | None = Field(None, alias="DATABASE_URL")
    redis_url: str | None = Field(None, alias="REDIS_URL")
    broker_url: str | None = Field(None, alias="BROKER_URL")
    redis_prefix: str = Field("rwa:", alias="RWA_REDIS_PREFIX")
    db_pool_size: int = Field(10, alias="RWA_DB_POOL_SIZE")

    # JWT: Ed25519 private key (PEM) that signs, its key id, and retired public keys that still verify.
    jwt_private_key: SecretStr | None = Field(None, alias="JWT_PRIVATE_KEY")
    jwt_key_id: str = Field("dev-1", alias="JWT_KEY_ID")
    # JSON object {"kid": "-----BEGIN PUBLIC KEY-----..."}: keys being rotated out
    jwt_retired_public_keys: str = Field("{}", alias="JWT_RETIRED_PUBLIC_KEYS")
    jwt_issuer: str = Field("stablerwa", alias="JWT_ISSUER")
    access_token_ttl_s: int = Field(900, alias="ACCESS_TOKEN_TTL_S")
    refresh_token_ttl_s: int = Field(30 * 24 * 3600, alias="REFRESH_TOKEN_TTL_S")

    # AES-256-GCM key for personal data at rest (base64 or hex of 32 bytes): encrypts, and decrypts what it wrote
    kyc_encryption_key: SecretStr | None = Field(None, alias="KYC_ENCRYPTION_KEY")
    # comma-separated keys that only decrypt (a rotation: the new key published before it writes, the old one
    # kept until `rwa kyc rekey` has re-encrypted every row; docs/runbooks/rotate-kyc-key.md)
    kyc_retired_encryption_keys: SecretStr | None = Field(None, alias="KYC_RETIRED_ENCRYPTION_KEYS")
    # privacy (resolvers/privacy): after an erasure, how long the user's KYC data key is kept before it is destroyed
    # (a legal hold such as AML record keeping; 0: destroyed when COMPLIANCE processes the erasure), and after how
    # many days ended login sessions and revoked API keys are deleted by the retention job
    privacy_kyc_retention_days: int = Field(0, alias="PRIVACY_KYC_RETENTION_DAYS", ge=0, le=3650)
    privacy_session_retention_days: int = Field(90, alias="PRIVACY_SESSION_RETENTION_DAYS", ge=1, le=3650)
    privacy_api_key_retention_days: int = Field(90, alias="PRIVACY_API_KEY_RETENTION_DAYS", ge=1, le=3650)
    # HMAC key of OAuth client secrets (resolvers/identity/oauth_clients.py); unset: derived from the master key
    oauth_secret_pepper: SecretStr | None = Field(None, alias="OAUTH_SECRET_PEPPER")
    # how long a KYC approval is valid; a worker job writes EXPIRED once it lapses
    kyc_approval_days: int = Field(365, alias="KYC_APPROVAL_DAYS", ge=1, le=3650)
    # cash out (resolvers/payments/withdrawals.py), in the currency's units: per request, per user per rolling 24 h,
    # and above which an ADMIN approves
    withdrawal_min: Decimal = Field(Decimal("1"), alias="WITHDRAWAL_MIN", gt=0)
    withdrawal_max: Decimal = Field(Decimal("100000"), alias="WITHDRAWAL_MAX", gt=0)
    withdrawal_daily_max: Decimal = Field(Decimal("250000"), alias="WITHDRAWAL_DAILY_MAX", gt=0)
    withdrawal_approval_threshold: Decimal = Field(Decimal("10000"), alias="WITHDRAWAL_APPROVAL_THRESHOLD", ge=0)
    # deposit sweeps (resolvers/payments/sweeps.py): a deposit address holding less than this is left alone
    sweep_min_amount: Decimal = Field(Decimal("1"), alias="SWEEP_MIN_AMOUNT", gt=0)
    # direct issuance (issueTokens) of more whole tokens than this waits for COMPLIANCE approval
    issuance_approval_threshold: Decimal = Field(Decimal(10_000), alias="ISSUANCE_APPROVAL_THRESHOLD", ge=0)
    # BIP-39 mnemonic for deposit addresses (payments)
    hd_wallet_mnemonic: SecretStr | None = Field(None, alias="HD_WALLET_MNEMONIC")
    # private key that deploys security tokens (an anvil account in dev)
    deployer_private_key: SecretStr | None = Field(None, alias="DEPLOYER_PRIVATE_KEY")
    webhook_secret: SecretStr | None = Field(None, alias="WEBHOOK_SECRET")
    # webhooks to loopback receivers (http allowed): on by default outside production, refused in production
    # (core/webhook_targets.py: every other non-public address is refused everywhere)
    webhook_allow_loopback: bool | None = Field(None, alias="WEBHOOK_ALLOW_LOOPBACK")
    # delivery retries (jobs/webhooks.py): attempts after the first, and the exponential backoff's bounds
    webhook_max_retries: int = Field(8, alias="RWA_WEBHOOK_MAX_RETRIES", ge=0, le=50)
    webhook_min_backoff_ms: int = Field(2_000, alias="RWA_WEBHOOK_MIN_BACKOFF_MS", ge=0)
    webhook_max_backoff_ms: int = Field(15 * 60_000, alias="RWA_WEBHOOK_MAX_BACKOFF_MS", ge=0)

    # uploaded documents (core/storage.py): unset = <data dir>/documents (one machine only); s3://bucket/prefix or
    # file:///shared/volume. S3 keys are optional: without them boto3's default chain (IAM role, IRSA, instance
    # profile, AWS_* variables) signs
    document_storage_url: str | None = Field(None, alias="DOCUMENT_STORAGE_URL")
    s3_endpoint: str | None = Field(None, alias="S3_ENDPOINT")
    s3_region: str | None = Field(None, alias="S3_REGION")
    s3_access_key_id: SecretStr | None = Field(None, alias="S3_ACCESS_KEY_ID")
    s3_secret_access_key: SecretStr | None = Field(None, alias="S3_SECRET_ACCESS_KEY")
    s3_addressing_style: Literal["auto", "path", "virtual"] | None = Field(None, alias="S3_ADDRESSING_STYLE")

    # OpenTelemetry (core/tracing.py): spans are exported over OTLP/HTTP only when the endpoint is set
    otel_exporter_otlp_endpoint: str | None = Field(None, alias="OTEL_EXPORTER_OTLP_ENDPOINT")
    otel_service_name: str | None = Field(None, alias="OTEL_SERVICE_NAME")
    otel_traces_sampler_ratio: float = Field(1.0, alias="RWA_TRACE_SAMPLE_RATIO", ge=0.0, le=1.0)

    # indexer tuning (indexer/config.py); RWA_FINALITY_DEPTH_<chainid> per chain
    indexer_poll_s: float | None = Field(None, alias="RWA_INDEXER_POLL_S", gt=0)
    indexer_batch_events: int = Field(10_000, alias="RWA_INDEXER_BATCH_EVENTS", gt=0)
    indexer_logs_per_call: int = Field(2_500, alias="RWA_INDEXER_LOGS_PER_CALL", gt=0)
    indexer_lock_retry_s: float = Field(1.0, alias="RWA_INDEXER_LOCK_RETRY_S", gt=0)
    indexer_self_check_s: float = Field(30.0, alias="RWA_INDEXER_SELF_CHECK_S", gt=0)
    indexer_finality_tags: bool = Field(True, alias="RWA_INDEXER_FINALITY_TAGS")
    # agent tuning (agent/config.py); RWA_AGENT_FEE_CAP_WEI_<chainid> / RWA_AGENT_MIN_BALANCE_WEI_<chainid>
    agent_poll_s: float = Field(0.2, alias="RWA_AGENT_POLL_S", gt=0)
    agent_replace_after_s: float = Field(30.0, alias="RWA_AGENT_REPLACE_AFTER_S", gt=0)
    agent_fee_bump_pct: int = Field(25, alias="RWA_AGENT_FEE_BUMP_PCT", ge=13)
    agent_gas_margin_pct: int = Field(25, alias="RWA_AGENT_GAS_MARGIN_PCT", ge=0)
    agent_max_in_flight: int = Field(256, alias="RWA_AGENT_MAX_IN_FLIGHT", ge=1)
    agent_batch: int = Field(200, alias="RWA_AGENT_BATCH", ge=1)
    agent_batch_max: int = Field(100, alias="RWA_AGENT_BATCH_MAX", ge=1)
    agent_test_crash_at: str | None = Field(None, alias="RWA_AGENT_TEST_CRASH_AT")
    # market-data subscriptions run once per process (0: per subscriber, for benchmarks only)
    shared_subscriptions: bool = Field(True, alias="RWA_SHARED_SUBSCRIPTIONS")
    # the on-chain agent's keys (agent/signers.py): one for all chains, or per chain AGENT_PRIVATE_KEY_<chainid>;
    # the treasury key pays stablecoin out (falls back to the agent key outside production). A remote signer
    # (eth_signTransaction over JSON-RPC: Web3Signer, Clef) replaces a local key: AGENT_SIGNER_URL[_<chainid>] +
    # AGENT_SIGNER_ADDRESS[_<chainid>] (TREASURY_SIGNER_URL/ADDRESS likewise).
    agent_private_key: SecretStr | None = Field(None, alias="AGENT_PRIVATE_KEY")
    treasury_private_key: SecretStr | None = Field(None, alias="TREASURY_PRIVATE_KEY")

    # browser origins allowed to call the API (comma-separated, "*" for any); unset: none in production, the usual
    # local front-end dev servers elsewhere
    cors_origins: str | None = Field(None, alias="CORS_ORIGINS")
    graphiql_enabled: bool | None = Field(None, alias="GRAPHIQL_ENABLED")
    # GraphiQL's explorer plugin (the schema as a tree of checkboxes), open when the page loads; on outside production
    graphiql_explorer_enabled: bool | None = Field(None, alias="GRAPHIQL_EXPLORER")
    introspection_enabled: bool | None = Field(None, alias="INTROSPECTION_ENABLED")
    max_query_depth: int = Field(12, alias="MAX_QUERY_DEPTH")
    max_aliases: int = Field(30, alias="MAX_ALIASES")
    max_query_tokens: int = Field(2000, alias="MAX_QUERY_TOKENS")
    # the document text, comments and literals included: graphql-core reads it a character at a time (~0.7 us each),
    # so a 1 MB comment held the event loop ~0.7 s; longer documents are refused before the lexer runs
    max_query_chars: int = Field(64 * 1024, alias="MAX_QUERY_CHARS", ge=1)
    max_query_cost: int = Field(50_000, alias="MAX_QUERY_COST")
    parser_cache_size: int = Field(512, alias="PARSER_CACHE_SIZE")
    # the parsed/validated document cache is bounded in bytes too (estimated footprint of the ASTs it keeps), and
    # documents longer than DOCUMENT_CACHE_MAX_CHARS are never kept (schema/document_cache.py)
    document_cache_bytes: int = Field(16 * 1024 * 1024, alias="DOCUMENT_CACHE_BYTES", ge=0)
    document_cache_max_chars: int = Field(32 * 1024, alias="DOCUMENT_CACHE_MAX_CHARS", ge=0)
    # automatic persisted queries (server/persisted_queries.py): how long Redis keeps a registered document, the
    # longest one registered, and how long shared caches may keep a GET persisted query answered to a caller
    # without credentials (public data)
    apq_ttl_s: int = Field(86400, alias="APQ_TTL_S", ge=1)
    apq_max_query_bytes: int = Field(32 * 1024, alias="APQ_MAX_QUERY_BYTES", ge=0)
    apq_public_max_age_s: int = Field(5, alias="APQ_PUBLIC_MAX_AGE_S", ge=0)
    # the server-side response cache (server/response_cache.py): query answers of the allow-listed public and
    # per-role reads, kept per process, invalidated by every successful mutation (Redis versions); writes that do
    # not go through a mutation (indexer, agent, jobs) show after at most RESPONSE_CACHE_TTL_S
    response_cache_enabled: bool = Field(True, alias="RESPONSE_CACHE_ENABLED")
    response_cache_ttl_s: float = Field(2.0, alias="RESPONSE_CACHE_TTL_S", ge=0)
    response_cache_bytes: int = Field(32 * 1024 * 1024, alias="RESPONSE_CACHE_BYTES", ge=0)
    # request bodies: JSON GraphQL requests, and multipart uploads (asset documents, up to 10 MiB each)
    max_request_bytes: int = Field(1024 * 1024, alias="MAX_REQUEST_BYTES")
    max_upload_bytes: int = Field(16 * 1024 * 1024, alias="MAX_UPLOAD_BYTES")
    # how long a client may take over each part of a request under `rwa serve` (server/http_protocol.py): the
    # request line and headers; the body (408), longer only while it keeps arriving at REQUEST_BODY_MIN_RATE
    # bytes/s on average (a large upload on a slow link; 0: the body timeout is final); a websocket's
    # graphql-transport-ws connection_init (closed with 4408); how long a websocket peer may leave the server's frames
    # unread (its send buffer full) before the connection is dropped (server/ws_protocol.py)
    request_head_timeout_s: float = Field(10.0, alias="REQUEST_HEAD_TIMEOUT_S", gt=0)
    request_body_timeout_s: float = Field(30.0, alias="REQUEST_BODY_TIMEOUT_S", gt=0)
    request_body_min_rate: int = Field(64 * 1024, alias="REQUEST_BODY_MIN_RATE", ge=0)
    ws_init_timeout_s: float = Field(10.0, alias="WS_INIT_TIMEOUT_S", gt=0)
    ws_send_timeout_s: float = Field(30.0, alias="WS_SEND_TIMEOUT_S", gt=0)
    # on shutdown, after the server stopped taking requests and before Redis and the engine close: how long the API
    # waits for the order sequencer's batches and detached writes in flight to commit and for their market data to be
    # published (resolvers/trading/sequencer.py drain; 0: nothing waits). uvicorn's timeout_graceful_shutdown (10 s,
    # cli/main.py) bounds the requests before it, not this
    shutdown_drain_timeout_s: float = Field(5.0, alias="SHUTDOWN_DRAIN_TIMEOUT_S", ge=0)

    login_rate_per_minute: int = Field(20, alias="LOGIN_RATE_PER_MINUTE")
    login_failures_before_lock: int = Field(5, alias="LOGIN_FAILURES_BEFORE_LOCK")
    login_lock_s: int = Field(300, alias="LOGIN_LOCK_S")
    # public market data (markets, orderBook, trades, ticker, candles): readable without a login unless
    # MARKET_DATA_REQUIRES_LOGIN; anonymous callers get PUBLIC_RATE_PER_MINUTE requests per client IP
    market_data_requires_login: bool = Field(False, alias="MARKET_DATA_REQUIRES_LOGIN")
    public_rate_per_minute: int = Field(600, alias="PUBLIC_RATE_PER_MINUTE")
    # MFA (resolvers/identity/mfa.py): roles that must have a confirmed TOTP factor to sign in when
    # RWA_ENV=production (comma-separated); the life of a login's "MFA required" challenge; the otpauth issuer
    mfa_required_roles: str = Field("ADMIN,COMPLIANCE", alias="MFA_REQUIRED_ROLES")
    mfa_challenge_ttl_s: int = Field(300, alias="MFA_CHALLENGE_TTL_S", ge=30, le=3600)
    mfa_issuer: str = Field("StableRWA", alias="MFA_ISSUER", min_length=1, max_length=64)

    # set by `rwa serve --workers N` for its workers (0: not under rwa serve's supervisor): /readyz reports the
    # supervisor's live workers against it
    serve_workers: int = Field(0, alias="RWA_SERVE_WORKERS", ge=0)

    # ops ports (README "Deploying"): interface of every process's ops port (/metrics, /healthz, /readyz), loopback
    # unless told (0.0.0.0 in the image)
    ops_host: str = Field("127.0.0.1", alias="RWA_OPS_HOST")
    # ops port of `rwa serve` (metrics of all its workers; 0: off) and of `rwa worker`
    api_metrics_port: int = Field(9100, alias="RWA_API_METRICS_PORT", ge=0, le=65535)
    worker_metrics_port: int = Field(9103, alias="RWA_WORKER_METRICS_PORT", ge=0, le=65535)
    # also serve /metrics on the public API port (off: metrics live on the ops port only)
    metrics_on_api_port: bool = Field(False, alias="METRICS_ON_API_PORT")

    # migrations at start: on outside production; off in production, where the `rwa migrate` Job runs them and the
    # others refuse a schema behind
    migrate_on_start: bool | None = Field(None, alias="MIGRATE_ON_START")
    # `rwa migrate`: how long a DDL statement may wait for a table lock (0: no limit) and may run (0: no limit)
    migration_lock_timeout_s: float = Field(10.0, alias="MIGRATION_LOCK_TIMEOUT_S", ge=0)
    migration_statement_timeout_s: float = Field(0.0, alias="MIGRATION_STATEMENT_TIMEOUT_S", ge=0)
    # peers whose X-Forwarded-For / X-Forwarded-Proto are believed (uvicorn's forwarded_allow_ips: comma-separated
    # IPs or CIDRs, "*" for any); others' headers are ignored, so the login rate limit keys on the real client
    forwarded_allow_ips: str = Field("127.0.0.1", alias="FORWARDED_ALLOW_IPS")

    # the host[:port] users open the app at (the front end that asks wallets to sign): the domain and URI of wallet
    # linking's Sign-In with Ethereum message, which wallets compare with the page asking. Required in production;
    # unset elsewhere: the request's Host header (never trusted in production: a proxying phishing site sets it)
    siwe_domain: str | None = Field(None, alias="SIWE_DOMAIN")

    log_level: str = Field("INFO", alias="LOG_LEVEL")
    log_json: bool = Field(True, alias="LOG_JSON")

    @field_validator("siwe_domain")
    @classmethod
    def _siwe_domain(cls, value: str | None) -> str | None:
        value = (value or "").strip()
        if not value:
            return None
        if not SIWE_DOMAIN.match(value):
            raise ValueError("SIWE_DOMAIN must be a host[:port] (no scheme or path), e.g. app.example.com")
        return value.lower()

    @property
    def is_production(self) -> bool:
        return self.env is Environment.PRODUCTION

    @property
    def migrate_at_start(self) -> bool:
        return (not self.is_production) if self.migrate_on_start is None else self.migrate_on_start

    @property
    def allowed_origins(self) -> list[str]:
        if self.cors_origins is None:
            return [] if self.is_production else list(DEV_FRONTEND_ORIGINS)
        return [o.strip().rstrip("/") for o in self.cors_origins.split(",") if o.strip()]

    @property
    def graphiql(self) -> bool:
        return (not self.is_production) if self.graphiql_enabled is None else self.graphiql_enabled

    @property
    def graphiql_explorer(self) -> bool:
        return (not self.is_production) if self.graphiql_explorer_enabled is None else self.graphiql_explorer_enabled

    @property
    def introspection(self) -> bool:
        return (not self.is_production) if self.introspection_enabled is None else self.introspection_enabled

    @property
    def webhook_loopback_allowed(self) -> bool:
        return (not self.is_production) if self.webhook_allow_loopback is None else self.webhook_allow_loopback

    @property
    def embedded(self) -> bool:
        """Embedded Postgres/Redis are used for whatever is not configured."""
        return self.database_url is None or self.redis_url is None

    def model_post_init(self, context: Any, /) -> None:
        """The variable families whose names carry a chain id (``RPC_URLS_137``, ``AGENT_PRIVATE_KEY_56``...),
        read here once, with the process environment under values passed to the constructor."""
        found = {k.upper(): str(v) for k, v in os.environ.items() if _PER_CHAIN.match(k.upper())}
        found.update({k.upper(): str(v) for k, v in (context or {}).get("per_chain", {}).items()})
        self._per_chain = {k: v.strip() for k, v in found.items() if v.strip()}
        self._rpc = {
            int(k.removeprefix("RPC_URLS_")): [u.strip() for u in v.split(",") if u.strip()]
            for k, v in self._per_chain.items()
            if k.startswith("RPC_URLS_")
        }
        self._chain_ints = {
            prefix: {
                int(k.removeprefix(prefix)): _int_var(k, v)
                for k, v in self._per_chain.items()
                if k.startswith(prefix) and k.removeprefix(prefix).isdigit()
            }
            for prefix in _PER_CHAIN_INTS
        }

    @classmethod
    def with_chain_values(cls, per_chain: Mapping[str, str], **values: Any) -> Settings:
        """Settings with per-chain variables given explicitly (tests, tools) on top of the environment's."""
        settings = cls(**values)
        settings.model_post_init({"per_chain": per_chain})
        return settings

    def rpc_urls(self, chain_id: int) -> list[str]:
        return list(self._rpc.get(chain_id, ()))

    def rpc_chain_ids(self) -> list[int]:
        return sorted(cid for cid, urls in self._rpc.items() if urls)

    def chain_ints(self, prefix: str) -> dict[int, int]:
        """``<prefix><chainid>`` integers (RWA_FINALITY_DEPTH_, RWA_AGENT_FEE_CAP_WEI_, RWA_AGENT_MIN_BALANCE_WEI_)."""
        return dict(self._chain_ints[prefix])

    def chain_value(self, name: str, chain_id: int) -> str | None:
        """``<NAME>_<chainid>`` if set, else ``<NAME>`` (per-chain overrides of the agent's keys and signers)."""
        raw = self._per_chain.get(f"{name}_{chain_id}")
        if raw:
            return raw
        field = {"AGENT_PRIVATE_KEY": self.agent_private_key, "TREASURY_PRIVATE_KEY": self.treasury_private_key}
        secret = field.get(name)
        if secret is not None:
            return secret.get_secret_value().strip() or None
        return self._per_chain.get(name) or None

    def data_path(self) -> Path:
        return Path(self.data_dir).expanduser().resolve()

    def check_production(self) -> None:
        """Refuse to run production with missing or placeholder secrets."""
        if not self.is_production:
            return
        required: dict[str, SecretStr | str | None] = {
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "JWT_PRIVATE_KEY": self.jwt_private_key,
            "KYC_ENCRYPTION_KEY": self.kyc_encryption_key,
            "HD_WALLET_MNEMONIC": self.hd_wallet_mnemonic,
            "WEBHOOK_SECRET": self.webhook_secret,
        }
        for name, value in required.items():
            raw = value.get_secret_value() if isinstance(value, SecretStr) else value
            if not raw:
                raise ConfigError(f"{name} must be set when RWA_ENV=production")
            lowered = raw.lower()
            if name.endswith("_URL"):
                continue
            if name == "HD_WALLET_MNEMONIC" and " ".join(lowered.split()) in WELL_KNOWN_MNEMONICS:
                raise ConfigError(
                    f"{name} is the public anvil/hardhat test mnemonic; set a real one for RWA_ENV=production"
                )
            if any(marker in lowered for marker in PLACEHOLDER_MARKERS) or len(raw) < 32:
                raise ConfigError(f"{name} looks like a placeholder; set a real secret for RWA_ENV=production")
        if not self.siwe_domain:
            raise ConfigError(
                "SIWE_DOMAIN must be set when RWA_ENV=production: the host users open the app at, shown by wallets "
                "when they link (the Host header is not trusted there)"
            )
        if _placeholder_host(self.siwe_domain):
            raise ConfigError(
                f"SIWE_DOMAIN={self.siwe_domain} is a placeholder or loopback host; set the host users open the app "
                "at for RWA_ENV=production (wallets show it when users link)"
            )
        if self.webhook_allow_loopback:
            raise ConfigError(
                "WEBHOOK_ALLOW_LOOPBACK must not be enabled when RWA_ENV=production (webhooks go to "
                "public https endpoints only)"
            )
        self._check_production_storage()
        self._check_production_kyc_keys()
        # optional in production, but when set it signs real deployments
        if self.deployer_private_key is not None:
            raw = self.deployer_private_key.get_secret_value().strip()
            if raw.lower().removeprefix("0x") in WELL_KNOWN_PRIVATE_KEYS:
                raise ConfigError(
                    "DEPLOYER_PRIVATE_KEY is a public anvil/hardhat test key; set a real one for RWA_ENV=production"
                )
            if any(marker in raw.lower() for marker in PLACEHOLDER_MARKERS) or len(raw) < 32:
                raise ConfigError(
                    "DEPLOYER_PRIVATE_KEY looks like a placeholder; set a real key for RWA_ENV=production"
                )

    def _check_production_storage(self) -> None:
        url = self.document_storage_url or ""
        if url and not url.startswith(("s3://", "file://", "/")):
            raise ConfigError("DOCUMENT_STORAGE_URL must be s3://bucket[/prefix] or file:///path")
        if url.startswith("s3://") and not url.removeprefix("s3://").split("/", 1)[0]:
            raise ConfigError("DOCUMENT_STORAGE_URL names no bucket (s3://bucket[/prefix])")
        key_id, secret = self.s3_access_key_id, self.s3_secret_access_key
        if (key_id is None) != (secret is None):
            raise ConfigError(
                "S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY go together (or neither: IAM role / default "
                "credential chain)"
            )
        if secret is not None:
            raw = secret.get_secret_value()
            if any(marker in raw.lower() for marker in PLACEHOLDER_MARKERS) or len(raw) < 20:
                raise ConfigError(
                    "S3_SECRET_ACCESS_KEY looks like a placeholder; set a real secret (or unset both S3 "
                    "keys to use the IAM role) for RWA_ENV=production"
                )

    def _check_production_kyc_keys(self) -> None:
        from core.encryption import parse_key  # noqa: PLC0415 (core.encryption imports nothing of ours)

        current = self.kyc_encryption_key.get_secret_value() if self.kyc_encryption_key else ""
        try:
            parse_key(current)
            retired = self.kyc_retired_keys()
        except ValueError as exc:
            raise ConfigError(f"KYC_ENCRYPTION_KEY / KYC_RETIRED_ENCRYPTION_KEYS: {exc}") from exc
        if parse_key(current) in retired:
            raise ConfigError("KYC_RETIRED_ENCRYPTION_KEYS lists the current KYC_ENCRYPTION_KEY")

    def kyc_retired_keys(self) -> list[bytes]:
        """The decrypt-only KYC keys (ValueError for one that is not 32 bytes, hex or base64)."""
        from core.encryption import parse_key  # noqa: PLC0415

        raw = self.kyc_retired_encryption_keys.get_secret_value() if self.kyc_retired_encryption_keys else ""
        return [parse_key(part) for part in raw.split(",") if part.strip()]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
