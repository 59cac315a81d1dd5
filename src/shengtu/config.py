"""Settings: one object, read from the environment (``SHENGTU_*``) and ``.env``."""

from __future__ import annotations

import os
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


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
    jwt_expire_minutes: int = Field(default=24 * 60, ge=1)
    allow_register: bool = True
    register_points: int = Field(default=0, ge=0)

    suchuang_base_url: str = "https://api.wuyinkeji.com"
    suchuang_api_key: str = ""
    redis_url: str = ""
    event_sweep_seconds: float = Field(default=5.0, gt=0)

    sandbox_host: str = "127.0.0.1"
    sandbox_port: int = 0
    sandbox_latency: float = Field(default=8.0, ge=0)
    sandbox_font: str = ""

    poll_interval: float = Field(default=5.0, gt=0)
    first_poll_delay: float = Field(default=3.0, ge=0)
    task_deadline: float = Field(default=600.0, gt=0)
    expected_duration: float = Field(default=60.0, gt=0)
    submit_attempts: int = Field(default=4, ge=1)
    download_attempts: int = Field(default=3, ge=1)
    upstream_timeout: float = Field(default=30.0, gt=0)
    upstream_rps: float = Field(default=15.0, gt=0)
    worker_concurrency: int = Field(default=256, ge=1)
    worker_batch: int = Field(default=100, ge=1)
    lease_seconds: float = Field(default=120.0, gt=0)

    login_failures_per_window: int = Field(default=10, ge=1)
    # Per address, higher: many honest users may share one address (an office, a NAT).
    login_ip_failures_per_window: int = Field(default=100, ge=1)
    login_failure_window_seconds: int = Field(default=300, ge=1)
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
    max_prompt_chars: int = Field(default=4000, ge=1)
    max_reference_images: int = Field(default=10, ge=1)

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
        path = self.data_dir / "jwt_secret"
        if path.exists():
            return path.read_text().strip()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        secret = secrets.token_urlsafe(48)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(secret)
        tmp.chmod(0o600)
        try:
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
