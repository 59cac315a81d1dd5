"""Settings: one object, read from the environment (``SHENGTU_*``) and ``.env``."""

from __future__ import annotations

import os
import secrets
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MIN_SECRET_CHARS = 32


def ensure_private_dir(path: Path) -> None:
    """The data folder holds the database and the secrets: its owner's alone (0700)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.stat()
    if info.st_mode & 0o077 and info.st_uid == os.getuid():
        path.chmod(0o700)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SHENGTU_", env_file=".env", extra="ignore")

    data_dir: Path = Path("./data")
    host: str = "0.0.0.0"  # noqa: S104 - a server listens on every interface unless told
    port: int = 8081
    public_base_url: str = ""
    database_url: str = ""
    db_pool_size: int = Field(default=10, ge=1)
    db_pool_overflow: int = Field(default=10, ge=0)
    timezone: str = "Asia/Shanghai"
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: str = "INFO"

    jwt_secret: str = ""
    # Seals the upstream keys of channels at rest; generated into the data folder when
    # unset. Every process must have the same one, and losing it loses the keys.
    secret_key: str = ""
    jwt_expire_minutes: int = Field(default=24 * 60, ge=1)
    # Kept for older configurations: false is the same as register_mode=closed.
    allow_register: bool = True
    # open: anyone; code: an invitation (redemption) code is needed; closed: admins only.
    register_mode: Literal["open", "code", "closed"] = "open"
    register_points: int = Field(default=0, ge=0)
    register_per_address: int = Field(default=10, ge=1)
    register_total: int = Field(default=300, ge=1)
    register_window_seconds: int = Field(default=3600, ge=1)
    # Comma-separated addresses or networks of the proxies whose X-Forwarded-For we believe.
    trusted_proxies: str = ""
    # Each argon2 hash takes ~64 MiB and a core for ~0.1 s: a flood must queue, not pile up.
    password_hash_concurrency: int = Field(default=2, ge=1)
    # argon2id's cost (RFC 9106's low-memory profile by default: 3 passes over 64 MiB).
    password_hash_time_cost: int = Field(default=3, ge=1, le=20)
    password_hash_memory_kib: int = Field(default=65536, ge=64, le=4 * 1024 * 1024)
    password_hash_wait_seconds: float = Field(default=10.0, gt=0)

    suchuang_base_url: str = "https://api.wuyinkeji.com"
    suchuang_api_key: str = ""
    redis_url: str = ""
    event_sweep_seconds: float = Field(default=5.0, gt=0)

    sandbox_host: str = "127.0.0.1"
    sandbox_port: int = 0
    sandbox_latency: float = Field(default=8.0, ge=0)
    sandbox_font: str = ""
    # The sandbox's pictures are this fraction of the asked size (1024×1024 at 1).
    sandbox_scale: float = Field(default=1.0, gt=0, le=1)

    poll_interval: float = Field(default=5.0, gt=0)
    first_poll_delay: float = Field(default=3.0, ge=0)
    task_deadline: float = Field(default=600.0, gt=0)
    expected_duration: float = Field(default=60.0, gt=0)
    submit_attempts: int = Field(default=4, ge=1)
    download_attempts: int = Field(default=3, ge=1)
    upstream_timeout: float = Field(default=30.0, gt=0)
    upstream_rps: float = Field(default=15.0, gt=0)
    # How late (s) a paced call may arrive after its slot without crowding the upstream's
    # next second: slots are (1 + this) / rps apart (providers/pacing.py).
    pacing_jitter_seconds: float = Field(default=0.1, ge=0, le=1)
    # A submit whose answer was lost after it was sent may have started a job upstream,
    # which the operator pays for. fail: the task fails and is refunded, never sent twice;
    # retry: send it again (only for an upstream that deduplicates submits).
    uncertain_submit: Literal["fail", "retry"] = "fail"
    # A channel key's breaker: open after this many failures in a row, for a cool-down
    # that starts here and doubles while failures go on, up to the maximum.
    breaker_failures: int = Field(default=5, ge=1)
    breaker_cooldown_seconds: float = Field(default=10.0, gt=0)
    breaker_max_cooldown_seconds: float = Field(default=600.0, gt=0)
    # ... or when, over the window, at least this share of its tries failed (and the
    # window holds enough tries to judge): a key that fails every other time, never five
    # in a row, still costs every other user a failover.
    breaker_error_rate: float = Field(default=0.5, gt=0, le=1)
    breaker_window_seconds: float = Field(default=60.0, gt=0)
    breaker_min_attempts: int = Field(default=20, ge=1)
    # Late results: after a task fails at its deadline with its upstream job still
    # running, ask about the job every late_poll_seconds for late_watch_hours, and keep a
    # picture that comes (lateResultUrl; the task stays failed and refunded).
    late_results: bool = True
    late_poll_seconds: float = Field(default=60.0, gt=0)
    late_watch_hours: float = Field(default=24.0, gt=0)
    worker_concurrency: int = Field(default=256, ge=1)
    worker_batch: int = Field(default=100, ge=1)
    lease_seconds: float = Field(default=120.0, gt=0)

    login_failures_per_window: int = Field(default=10, ge=1)
    # Per address, higher: many honest users may share one address (an office, a NAT).
    login_ip_failures_per_window: int = Field(default=100, ge=1)
    login_failure_window_seconds: int = Field(default=300, ge=1)
    # Successful logins too: a stolen password must not mint tokens without end.
    login_successes_per_window: int = Field(default=30, ge=1)
    login_ip_successes_per_window: int = Field(default=300, ge=1)
    redeem_failures_per_window: int = Field(default=10, ge=1)
    # Per address: failures of accounts younger than redeem_new_account_hours share the
    # first (cheap accounts, made to guess); older accounts share the second, much higher.
    redeem_ip_failures_per_window: int = Field(default=50, ge=1)
    redeem_ip_established_failures_per_window: int = Field(default=500, ge=1)
    redeem_new_account_hours: float = Field(default=168.0, ge=0)
    # Past its failure budget an account's code is still checked this often per window
    # (a good one is credited; a bad one is a 429 that does not say why).
    redeem_late_checks_per_window: int = Field(default=3, ge=0)
    redeem_failure_window_seconds: int = Field(default=3600, ge=1)
    user_requests_per_minute: int = Field(default=600, ge=0)
    api_key_requests_per_minute: int = Field(default=600, ge=0)
    max_inflight_tasks: int = Field(default=20, ge=0)
    max_inflight_per_api_key: int = Field(default=20, ge=0)

    storage: Literal["local", "s3"] = "local"
    s3_endpoint: str = ""
    s3_bucket: str = ""
    s3_region: str = ""
    s3_access_key: str = ""
    s3_secret_key: str = ""
    s3_public_base_url: str = ""
    s3_url_expire_seconds: int = Field(default=3600, ge=60)
    s3_addressing_style: Literal["auto", "virtual", "path"] = "auto"

    max_result_bytes: int = Field(default=30 * 1024 * 1024, ge=1024)
    max_upload_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    # 4096 × 4096: decoded as RGBA that is 64 MiB, and at most image_decode_concurrency
    # pictures are decoded at once in one process.
    max_image_pixels: int = Field(default=4096 * 4096, ge=64 * 64)
    image_decode_concurrency: int = Field(default=2, ge=1)
    upload_daily_bytes: int = Field(default=200 * 1024 * 1024, ge=0)
    upload_daily_count: int = Field(default=200, ge=0)
    # An upload no task used within this many hours is deleted by the sweep.
    upload_unused_hours: float = Field(default=24.0, gt=0)
    # 0 keeps results forever; else a result this many days old is deleted (410 after).
    result_retention_days: float = Field(default=0.0, ge=0)
    sweep_interval_seconds: float = Field(default=600.0, gt=0)
    # What one point sells for, in the currency of the channels' costPerPicture: the stats'
    # revenue and margin (net points × this − upstream cost).
    point_price: Decimal = Field(default=Decimal("0.01"), ge=0)

    resolver_threads: int = Field(default=8, ge=1)
    resolver_queue: int = Field(default=64, ge=1)

    ws_recheck_seconds: float = Field(default=30.0, gt=0)
    ws_idle_seconds: float = Field(default=900.0, gt=0)
    ws_max_per_user: int = Field(default=8, ge=1)
    ws_max_per_process: int = Field(default=2000, ge=1)
    # Free accounts (never credited but by the sign-up bonus) together hold at most this
    # share of ws_max_per_process; the rest is kept for paying users.
    ws_free_share: float = Field(default=0.25, gt=0, le=1)
    # A client gets this long to send a request's headers (slowloris), and one process
    # holds at most max_connections connections (503 beyond).
    header_timeout: float = Field(default=15.0, gt=0)
    max_connections: int = Field(default=4096, ge=16)
    max_prompt_chars: int = Field(default=4000, ge=1)
    # A user whose blocked and denied prompts reach this many is disabled (0: never).
    safety_strikes: int = Field(default=0, ge=0)
    max_reference_images: int = Field(default=10, ge=1)
    # Labels on every stored result (GB 45438-2025; docs/safety.md "标识 / Labels"). The
    # implicit one, always: the AIGC metadata naming this provider (its name or its code)
    # and the task number. The visible one on the models matching label_visible_models
    # (comma-separated names, * and ? as wildcards; "" for none, "*" for all; the spec's
    # models by default): its text, corner, height over the shorter side, and opacity;
    # label_font a font file that has the text's characters (else a CJK font found).
    label_provider: str = Field(default="Shengtu", min_length=1, max_length=128)
    label_visible_models: str = "sc_soraimg_*"
    label_visible_text: str = Field(default="AI生成", min_length=1, max_length=32)
    label_visible_position: Literal["top-left", "top-right", "bottom-left", "bottom-right"] = (
        "bottom-right"
    )
    label_visible_size: float = Field(default=0.05, ge=0.01, le=0.5)
    label_visible_opacity: float = Field(default=0.85, gt=0, le=1)
    label_font: str = ""
    # Webhooks: the waits between a message's attempts (seconds, comma-separated; after
    # the last, the message has failed and its endpoint is disabled), one attempt's time
    # limit, how often the outbox is read, and origins exempt from the private-network
    # guard (for a receiver on this machine in development; never in production).
    webhook_backoff: str = "5,300,1800,7200,18000,36000,36000"
    webhook_timeout_seconds: float = Field(default=10.0, gt=0)
    webhook_poll_seconds: float = Field(default=1.0, gt=0)
    webhook_concurrency: int = Field(default=16, ge=1)
    webhook_trusted_origins: str = ""
    # Fairness: deliveries in flight at once per user and per endpoint (all processes
    # together), tests and redeliveries per endpoint per minute, and the days a finished
    # message and its attempts are kept.
    webhook_user_concurrency: int = Field(default=4, ge=1)
    webhook_endpoint_concurrency: int = Field(default=2, ge=1)
    webhook_manual_per_minute: int = Field(default=10, ge=1)
    webhook_retention_days: float = Field(default=30.0, gt=0)
    # Every upstream exchange of a task (our requests, keys and signatures masked, and the
    # upstream's answers), kept for the operator's task detail: each body cut to this many
    # bytes, each exchange kept this many days (0: none kept, nothing recorded).
    exchange_body_bytes: int = Field(default=16 * 1024, ge=1024, le=1024 * 1024)
    exchange_retention_days: float = Field(default=7.0, ge=0)
    # Prometheus: where this machine's processes keep their figures (default
    # DATA_DIR/metrics), the bearer token /metrics asks for, and an address of its own
    # for it (host:port). /metrics answers 404 unless a token or an address is set.
    metrics_dir: Path | None = None
    metrics_token: str = ""
    metrics_bind: str = ""
    # How long /v1/images/* wait for the pictures before answering with the task numbers.
    openai_wait_seconds: float = Field(default=300.0, gt=0)
    # Downloads (results, reference pictures): each window of fetch_rate_grace_seconds
    # must bring min_bytes_per_second × the window (0: no floor), whatever the per-read
    # timeouts; a task's downloads end at its deadline too. Results and references are
    # fetched on connection pools of their own, of these sizes.
    fetch_min_bytes_per_second: int = Field(default=1024, ge=0)
    fetch_rate_grace_seconds: float = Field(default=10.0, gt=0)
    # As many as a worker's steps, so a burst of result copies never queues for a
    # connection (the rate floor's window counts the wait); references several times one
    # user's in-flight cap, so one user's slow servers cannot take them all.
    fetch_connections: int = Field(default=256, ge=1)
    reference_fetch_connections: int = Field(default=64, ge=1)
    # The moderation service (shengtu.moderation), off by default. With a provider, each
    # prompt is checked after the word lists and before the charge (moderation_prompts),
    # and each result picture before it is delivered (moderation_images: reject fails
    # the task and refunds it, its picture deleted; hold keeps the task waiting for the
    # operator's decision in /admin/safety/events, at most moderation_hold_hours, then
    # failed and refunded; off checks no picture). moderation_fail says what a check
    # with no verdict (the service down, slow, refusing the key) does: open lets the
    # prompt or picture through and logs it, closed refuses the prompt (503, nothing
    # charged) or fails the task (refunded). openai: moderation_api_key (Bearer) and
    # moderation_model; aliyun (内容安全 2022-03-02): moderation_access_key_id and
    # _secret, the text action (TextModerationPlus or TextModeration) and the services
    # of text and image. moderation_base_url: the provider's own unless set.
    moderation_provider: Literal["none", "aliyun", "openai"] = "none"
    moderation_base_url: str = ""
    moderation_fail: Literal["open", "closed"] = "closed"
    moderation_prompts: bool = True
    moderation_images: Literal["reject", "hold", "off"] = "reject"
    moderation_hold_hours: float = Field(default=24.0, gt=0)
    moderation_timeout_seconds: float = Field(default=10.0, gt=0)
    moderation_api_key: str = ""
    moderation_model: str = "omni-moderation-latest"
    moderation_access_key_id: str = ""
    moderation_access_key_secret: str = ""
    moderation_text_action: Literal["TextModerationPlus", "TextModeration"] = "TextModerationPlus"
    moderation_text_service: str = "llm_query_moderation"
    moderation_image_service: str = "baselineCheck"
    # Payments: how often a worker looks for pending orders to ask their provider about,
    # and the waits between two questions about one order (seconds, comma-separated; the
    # last repeats until the order expires). A notify's body is capped at
    # payment_notify_max_bytes. A kept notify that moved nothing (refused, mismatched, of
    # an unknown order, ignored) is deleted after payment_notify_retention_days, so a
    # flood of forged ones cannot grow the table for ever; one that was believed stays
    # with its order. (SHENGTU_FAILPOINTS, read by shengtu.failpoints, is for tests only:
    # it has a process die at named places.)
    payment_check_seconds: float = Field(default=2.0, gt=0)
    payment_check_backoff: str = "10,30,60,120,300"
    payment_notify_max_bytes: int = Field(default=64 * 1024, ge=1024, le=1024 * 1024)
    payment_notify_retention_days: float = Field(default=90.0, gt=0)

    @field_validator("jwt_secret", "secret_key")
    @classmethod
    def _long_enough(cls, value: str, info: ValidationInfo) -> str:
        if value and len(value) < MIN_SECRET_CHARS:
            raise ValueError(
                f"SHENGTU_{str(info.field_name).upper()} 至少需要 {MIN_SECRET_CHARS} 个字符"
                "(例如 python -c 'import secrets; print(secrets.token_urlsafe(48))')"
            )
        return value

    @property
    def webhook_waits(self) -> tuple[float, ...]:
        return tuple(float(w) for w in self.webhook_backoff.split(",") if w.strip())

    @property
    def payment_check_waits(self) -> tuple[float, ...]:
        return tuple(float(w) for w in self.payment_check_backoff.split(",") if w.strip())

    @property
    def webhook_trusted(self) -> frozenset[str]:
        return frozenset(
            o.strip().rstrip("/") for o in self.webhook_trusted_origins.split(",") if o.strip()
        )

    @property
    def effective_register_mode(self) -> str:
        return self.register_mode if self.allow_register else "closed"

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'shengtu.db').resolve()}"

    @property
    def resolved_public_base_url(self) -> str:
        if self.public_base_url:
            return self.public_base_url.rstrip("/")
        return f"http://localhost:{self.port}"

    @property
    def sandbox_enabled(self) -> bool:
        """With no upstream key the suchuang models are routed to the built-in sandbox."""
        return not self.suchuang_api_key

    def resolved_jwt_secret(self) -> str:
        """The configured secret, else one generated once and kept in the data folder.

        Kept on disk so that tokens survive a restart and every process of one
        installation signs with the same key.
        """
        if self.jwt_secret:
            return self.jwt_secret
        return read_or_create_secret(self.data_dir, "jwt_secret")

    def resolved_secret_key(self) -> str:
        if self.secret_key:
            return self.secret_key
        return read_or_create_secret(self.data_dir, "secret_key")


def read_or_create_secret(data_dir: Path, name: str) -> str:
    """A random secret kept in ``data_dir/name``, made once, readable by its owner only.

    The file is created 0600 (never wider, not even for a moment), under a temporary name
    and then linked into place: of two processes racing, one wins and both read its secret.
    """
    path = data_dir / name
    if path.exists():
        return path.read_text().strip()
    ensure_private_dir(data_dir)
    tmp = data_dir / f".{name}.{os.getpid()}.{secrets.token_hex(4)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(48))
        # link() fails if another process won the race; then read theirs.
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    return path.read_text().strip()


@lru_cache
def get_settings() -> Settings:
    return Settings()
