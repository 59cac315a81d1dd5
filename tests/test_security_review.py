"""The security review's findings (issue 11), each pinned by a test that failed before."""

from __future__ import annotations

import concurrent.futures
import io
import os
import socket
import stat
import time
from pathlib import Path

import httpx
import jwt
import pytest
from PIL import Image
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.support import Platform, RedisServer, cli, free_port, wait_http


def _me(platform: Platform, token: str) -> httpx.Response:
    return httpx.get(platform.url + "/user/auth/me", headers={"Authorization": f"Bearer {token}"})


def _register(platform: Platform, name: str, password: str = "a-long-password", **headers: str):  # type: ignore[no-untyped-def]
    return httpx.post(
        platform.url + "/user/auth/register",
        json={"username": name, "password": password},
        headers=headers,
    )


# 1. A deleted user's token must not open the next account (ids come back on SQLite).
def test_a_deleted_users_token_never_opens_a_new_account(platform: Platform) -> None:
    mallory = platform.new_user()
    mallory_id = _me(platform, mallory.token).json()["data"]["userId"]
    cli(platform.env, "user", "delete", mallory.name, "--yes")
    victim = platform.new_user()
    victim_id = _me(platform, victim.token).json()["data"]["userId"]
    assert victim_id > mallory_id, "a user id was handed out twice"
    assert _me(platform, mallory.token).status_code == 401
    # Even a token for the victim's id, signed right, is refused without the victim's nonce.
    claims = jwt.decode(mallory.token, options={"verify_signature": False})
    forged = jwt.encode(
        {**claims, "sub": str(victim_id)}, platform.env["SHENGTU_JWT_SECRET"], algorithm="HS256"
    )
    assert _me(platform, forged).status_code == 401
    assert _me(platform, victim.token).json()["data"]["username"] == victim.name


def test_disable_bans_at_once_and_enable_lifts_it(platform: Platform) -> None:
    user = platform.new_user(points=30)
    key = user.client.post("/user/api-keys", json={"name": "k"}).json()["data"]["key"]
    cli(platform.env, "user", "disable", user.name)
    assert _me(platform, user.token).status_code == 401
    balance = platform.url + "/user/points/consumption/balance"
    assert httpx.get(balance, headers={"X-API-Key": key}).status_code == 401
    login = httpx.post(
        platform.url + "/user/auth/login", json={"username": user.name, "password": user.password}
    )
    assert login.status_code == 401
    cli(platform.env, "user", "enable", user.name)
    assert _me(platform, user.token).status_code == 200
    assert httpx.get(balance, headers={"X-API-Key": key}).json()["data"]["balance"] == 30


# 2. Sign-up: limited per address (behind trusted proxies only) and in total; modes.
def test_a_registration_flood_is_refused_per_address(tmp_path: Path) -> None:
    platform = Platform(
        tmp_path,
        SHENGTU_REGISTER_PER_ADDRESS="3",
        SHENGTU_TRUSTED_PROXIES="127.0.0.1",
    ).start()
    try:
        codes = [
            _register(platform, f"flood_{i}", **{"X-Forwarded-For": "203.0.113.7"}).status_code
            for i in range(5)
        ]
        assert codes == [200, 200, 200, 429, 429]
        refused = _register(platform, "flood_x", **{"X-Forwarded-For": "203.0.113.7"})
        assert "注册过于频繁" in refused.json()["message"] and "retry-after" in refused.headers
        other = _register(platform, "neighbour", **{"X-Forwarded-For": "198.51.100.9"})
        assert other.status_code == 200, other.json()
        # The last hop is the trusted proxy's to write; what a client put before it is not
        # believed past the first untrusted address.
        spoof = _register(platform, "spoofer", **{"X-Forwarded-For": "10.9.9.9, 203.0.113.7"})
        assert spoof.status_code == 429
    finally:
        platform.stop()


def test_forwarded_for_is_ignored_without_trusted_proxies(tmp_path: Path) -> None:
    platform = Platform(tmp_path, SHENGTU_REGISTER_PER_ADDRESS="2").start()
    try:
        codes = [
            _register(platform, f"xff_{i}", **{"X-Forwarded-For": f"203.0.113.{i}"}).status_code
            for i in range(3)
        ]
        assert codes == [200, 200, 429]
    finally:
        platform.stop()


def test_the_registration_limit_holds_across_two_api_processes(tmp_path: Path) -> None:
    redis = RedisServer(tmp_path).start()
    try:
        platform = Platform(
            tmp_path / "p",
            worker=False,
            SHENGTU_REDIS_URL=redis.url,
            SHENGTU_REGISTER_PER_ADDRESS="4",
        )
        platform.data_dir.mkdir()
        platform.start()
        port2 = free_port()
        second = platform.url.rsplit(":", 1)[0] + f":{port2}"
        wait_http(second + "/healthz", platform.spawn("serve", "--no-worker", "--port", str(port2)))
        try:
            codes = []
            for i in range(8):
                url = platform.url if i % 2 == 0 else second
                r = httpx.post(
                    url + "/user/auth/register",
                    json={"username": f"both_{i}", "password": "a-long-password"},
                )
                codes.append(r.status_code)
            assert codes.count(200) == 4 and codes[4:] == [429] * 4, codes
        finally:
            platform.stop()
    finally:
        redis.stop()


def test_register_modes_closed_and_code(tmp_path: Path) -> None:
    platform = Platform(tmp_path, SHENGTU_REGISTER_MODE="code").start()
    try:
        missing = _register(platform, "no_code")
        assert missing.status_code == 400 and "邀请码" in missing.json()["message"]
        code = cli(platform.env, "codes", "create", "--points", "50").stdout.strip()
        assert len(code) >= 32  # 160 bits in base32
        wrong = httpx.post(
            platform.url + "/user/auth/register",
            json={"username": "bad_code", "password": "a-long-password", "code": "ST" + "A" * 32},
        )
        assert wrong.status_code == 400 and "兑换码无效" in wrong.json()["message"]
        # The failed sign-up left no user behind: the name is still free.
        assert _register_with(platform, "bad_code", code).status_code == 200
        user = platform.login("bad_code", "a-long-password")
        assert user.balance() == 50
        reused = _register_with(platform, "second_try", code)
        assert reused.status_code == 400 and "已被使用" in reused.json()["message"]
        login = httpx.post(
            platform.url + "/user/auth/login",
            json={"username": "second_try", "password": "a-long-password"},
        )
        assert login.status_code == 401  # no half-made account
        platform.audit()
    finally:
        platform.stop()
    closed = Platform(tmp_path / "closed", SHENGTU_REGISTER_MODE="closed")
    closed.data_dir.mkdir()
    closed.start()
    try:
        r = _register(closed, "anyone")
        assert r.status_code == 403 and "未开放注册" in r.json()["message"]
    finally:
        closed.stop()


def _register_with(platform: Platform, name: str, code: str) -> httpx.Response:
    return httpx.post(
        platform.url + "/user/auth/register",
        json={"username": name, "password": "a-long-password", "code": code},
    )


def test_redeeming_a_code_works_once_even_when_raced(audited: Platform) -> None:
    code = cli(audited.env, "codes", "create", "--points", "40").stdout.strip()
    user = audited.new_user()
    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        answers = list(
            pool.map(
                lambda _: user.client.post("/user/points/redeem", json={"code": code}).json(),
                range(20),
            )
        )
    assert sum(a["code"] == 200 for a in answers) == 1, answers
    # The others: the code is used, or (past 10 failed tries) this user is throttled.
    assert all(
        ("已被使用" in a["message"]) or (a["code"] == 429 and "兑换失败次数过多" in a["message"])
        for a in answers
        if a["code"] != 200
    ), answers
    assert user.balance() == 40
    kinds = [
        r["kind"]
        for r in user.client.get("/user/points/consumption/records").json()["data"]["records"]
    ]
    assert kinds == ["redeem"]


# 3. Login: counted before the password is checked, names folded, successes limited.
def test_parallel_wrong_passwords_lock_the_name_after_the_limit(tmp_path: Path) -> None:
    platform = Platform(tmp_path, SHENGTU_LOGIN_FAILURES_PER_WINDOW="10").start()
    try:
        user = platform.new_user()

        def guess(i: int) -> int:
            name = user.name.upper() if i % 2 else user.name
            return httpx.post(
                platform.url + "/user/auth/login",
                json={"username": name, "password": f"wrong-{i}"},
                timeout=60,
            ).status_code

        with concurrent.futures.ThreadPoolExecutor(50) as pool:
            codes = list(pool.map(guess, range(500)))
        assert codes.count(401) == 10 and codes.count(429) == 490, sorted(set(codes))
        right = httpx.post(
            platform.url + "/user/auth/login",
            json={"username": user.name, "password": user.password},
        )
        assert right.status_code == 429
    finally:
        platform.stop()


def test_successful_logins_are_limited_too(tmp_path: Path) -> None:
    platform = Platform(tmp_path, SHENGTU_LOGIN_SUCCESSES_PER_WINDOW="3").start()
    try:
        user = platform.new_user()  # logs in once
        body = {"username": user.name, "password": user.password}
        codes = [
            httpx.post(platform.url + "/user/auth/login", json=body).status_code for _ in range(3)
        ]
        assert codes == [200, 200, 429]
    finally:
        platform.stop()


# 5. A small file that declares a huge picture is refused before it is decoded.
def _peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_a_pixel_bomb_is_refused_without_decoding_it(platform: Platform) -> None:
    user = platform.new_user()
    bomb = io.BytesIO()
    Image.new("1", (8000, 7999)).save(bomb, format="PNG", optimize=True)
    assert len(bomb.getvalue()) < 300 * 1024
    pid = platform.server.proc.pid
    before = _peak_rss_kib(pid)
    for _ in range(4):
        r = user.client.post(
            "/user/files/upload", files={"file": ("bomb.png", bomb.getvalue(), "image/png")}
        )
        assert r.status_code == 400 and "图片尺寸过大" in r.json()["message"], r.json()
    grew_mib = (_peak_rss_kib(pid) - before) / 1024
    assert grew_mib < 40, f"the server's peak memory grew {grew_mib:.0f} MiB"


def test_uploads_lose_their_exif_location(platform: Platform) -> None:
    user = platform.new_user()
    img = Image.new("RGB", (40, 30), (10, 200, 10))
    exif = Image.Exif()
    exif[0x8825] = {1: "N", 2: (39.0, 54.0, 27.0), 3: "E", 4: (116.0, 23.0, 17.0)}  # GPS
    exif[0x010F] = "Camera Maker"
    src = io.BytesIO()
    img.save(src, format="JPEG", exif=exif)
    assert Image.open(io.BytesIO(src.getvalue())).getexif()
    r = user.client.post(
        "/user/files/upload", files={"file": ("gps.jpg", src.getvalue(), "image/jpeg")}
    )
    assert r.json()["code"] == 200, r.json()
    stored = httpx.get(r.json()["data"]["url"]).content
    assert not Image.open(io.BytesIO(stored)).getexif()
    assert b"Camera Maker" not in stored


def test_the_daily_upload_quota(tmp_path: Path) -> None:
    platform = Platform(tmp_path, SHENGTU_UPLOAD_DAILY_COUNT="2").start()
    try:
        user = platform.new_user()
        png = io.BytesIO()
        Image.new("RGB", (8, 8)).save(png, format="PNG")
        codes = [
            user.client.post(
                "/user/files/upload", files={"file": ("a.png", png.getvalue(), "image/png")}
            ).status_code
            for _ in range(3)
        ]
        assert codes == [200, 200, 429]
    finally:
        platform.stop()


def test_two_racing_sweeps_delete_each_unused_upload_once(tmp_path: Path) -> None:
    platform = Platform(tmp_path, SHENGTU_UPLOAD_UNUSED_HOURS="0.0003").start()  # ~1 s
    try:
        user = platform.new_user(points=35 * 3)
        urls = []
        for i in range(12):
            png = io.BytesIO()
            Image.new("RGB", (8, 8), (i, 0, 0)).save(png, format="PNG")
            up = user.client.post(
                "/user/files/upload", files={"file": ("a.png", png.getvalue(), "image/png")}
            ).json()
            urls.append(up["data"]["url"])
        used = urls[:3]
        for url in used:
            task = user.submit(modelName="sc_soraimg_img2img_1x1", prompt="用它", imageUrl=url)
            assert task["code"] == 200, task
        time.sleep(1.5)
        sweeps = [platform.spawn("sweep"), platform.spawn("sweep")]
        for proc in sweeps:
            proc.proc.wait(60)
        counts = []
        for proc in sweeps:
            text = proc.log_text()
            counts.append(int(text.split("已删除未使用的上传 ")[1].split(" ")[0]))
        assert sum(counts) == 9, counts
        for url in used:
            assert httpx.get(url).status_code == 200
        for url in urls[3:]:
            assert httpx.get(url).status_code == 404
        files = list((tmp_path / "files" / "uploads").rglob("*.png"))
        assert len(files) == 3
        # A swept upload cannot be used any more, and the refusal costs nothing.
        late = user.submit(modelName="sc_soraimg_img2img_1x1", prompt="晚了", imageUrl=urls[5])
        assert late["code"] == 400 and "不存在" in late["message"]
        platform.audit()
    finally:
        platform.stop()


def test_results_past_their_retention_answer_410(tmp_path: Path) -> None:
    platform = Platform(tmp_path, SHENGTU_RESULT_RETENTION_DAYS="0.00001").start()  # ~0.9 s
    try:
        user = platform.new_user(points=30)
        done = user.wait(
            user.submit(modelName="sc_soraimg_text_1x1", prompt="会过期")["data"]["taskNo"]
        )
        assert done["status"] == "completed" and done["resultExpired"] is False
        assert httpx.get(done["resultUrl"]).status_code == 200
        time.sleep(1.5)
        assert "过期结果图片 1 个" in cli(platform.env, "sweep").stdout
        gone = httpx.get(done["resultUrl"])
        assert gone.status_code == 410 and gone.json()["code"] == 410, gone.text
        assert "保存期限" in gone.json()["message"]
        after = user.task(done["taskNo"])
        assert after["status"] == "completed" and after["resultExpired"] is True
        assert not list((tmp_path / "files" / "results").rglob("*.png"))
        platform.audit()
    finally:
        platform.stop()


# 6 and 12. Cheap refusals before any lookup; handed-upstream URLs on web ports only.
def test_a_zero_point_account_costs_no_name_lookup(platform: Platform) -> None:
    user = platform.new_user()
    # This machine's own name resolves to a loopback or private address: looked up, it is
    # refused as private (400); the balance check first answers 402 without a lookup.
    own_name = socket.gethostname()
    r = user.client.post(
        "/user/ai/tasks/submit",
        json={
            "modelName": "sc_soraimg_img2img_1x1",
            "prompt": "查余额在先",
            "imageUrl": f"https://{own_name}/a.png",
        },
    )
    assert r.status_code == 402, r.json()


def test_reference_urls_go_upstream_on_web_ports_only(platform: Platform) -> None:
    user = platform.new_user(points=100)
    for url in ("https://93.184.216.34:8443/a.png", "http://unresolvable.example:6379/a.png"):
        r = user.submit(modelName="sc_soraimg_img2img_1x1", prompt="端口", imageUrl=url)
        assert r["code"] == 400 and "只允许端口" in r["message"], r
    assert user.balance() == 100


# 7. A WebSocket lives as long as its credential, within caps, and says why it closes.
def _ws(platform: Platform, token: str):  # type: ignore[no-untyped-def]
    return connect(platform.url.replace("http://", "ws://") + f"/ws/tasks?token={token}")


def _closed_with(ws, timeout: float = 10.0) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            ws.recv(max(0.1, deadline - time.monotonic()))
        except TimeoutError:
            break
        except ConnectionClosed as exc:
            assert exc.rcvd is not None
            return exc.rcvd.code, exc.rcvd.reason
    raise AssertionError("the socket stayed open")


def test_websockets_end_with_their_credential_and_have_caps(tmp_path: Path) -> None:
    platform = Platform(
        tmp_path,
        SHENGTU_WS_RECHECK_SECONDS="0.5",
        SHENGTU_WS_MAX_PER_USER="2",
        SHENGTU_WS_IDLE_SECONDS="3",
    ).start()
    try:
        user = platform.new_user()
        with _ws(platform, user.token) as first, _ws(platform, user.token) as second:
            first.recv(5), second.recv(5)
            with _ws(platform, user.token) as third:
                code, reason = _closed_with(third)
                assert code == 4429 and "上限" in reason
            r = user.client.post(
                "/user/auth/password",
                json={"oldPassword": user.password, "newPassword": "another-password"},
            )
            assert r.json()["code"] == 200
            code, reason = _closed_with(first)
            assert code == 4401 and "登录已失效" in reason
        fresh = platform.login(user.name, "another-password")
        with _ws(platform, fresh.token) as idle:
            idle.recv(5)
            code, reason = _closed_with(idle, timeout=10)
            assert code == 4408 and "空闲" in reason
    finally:
        platform.stop()


# 9. Password change and API keys.
def test_a_password_change_revokes_keys_and_keys_cannot_make_keys(platform: Platform) -> None:
    user = platform.new_user()
    key = user.client.post("/user/api-keys", json={"name": "k"}).json()["data"]["key"]
    by_key = platform.client(key)
    refused = by_key.post("/user/api-keys", json={"name": "more"})
    assert refused.status_code == 403 and "登录 Token" in refused.json()["message"]
    refused = by_key.post(
        "/user/auth/password", json={"oldPassword": user.password, "newPassword": "x" * 12}
    )
    assert refused.status_code == 403
    r = user.client.post(
        "/user/auth/password", json={"oldPassword": user.password, "newPassword": "y" * 12}
    )
    assert r.json()["data"] == {"revokedApiKeys": 1}
    assert by_key.get("/user/auth/me").status_code == 401
    # keepApiKeys keeps them, as the docs say.
    fresh = platform.login(user.name, "y" * 12)
    kept = fresh.client.post("/user/api-keys", json={"name": "kept"}).json()["data"]["key"]
    r = fresh.client.post(
        "/user/auth/password",
        json={"oldPassword": "y" * 12, "newPassword": "z" * 12, "keepApiKeys": True},
    )
    assert r.json()["data"] == {"revokedApiKeys": 0}
    assert platform.client(kept).get("/user/auth/me").status_code == 200


# 10. Security headers on every HTML page and on files.
def _html_routes(platform: Platform) -> list[str]:
    return ["/console/", "/docs"]


def test_security_headers_on_pages_and_files(platform: Platform) -> None:
    for path in _html_routes(platform):
        r = httpx.get(platform.url + path)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html"), path
        policy = r.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in policy and "'unsafe-inline'" not in policy, path
        assert "script-src 'self'" in policy and "object-src 'none'" in policy, path
        assert r.headers["x-content-type-options"] == "nosniff", path
        assert r.headers["referrer-policy"] == "same-origin", path
        assert "<script>" not in r.text or "sha256-" in policy, path
    console = httpx.get(platform.url + "/console/").text
    assert "#token=" not in console and "<script>" not in console and "style=" not in console
    user = platform.new_user()
    png = io.BytesIO()
    Image.new("RGB", (8, 8)).save(png, format="PNG")
    url = user.client.post(
        "/user/files/upload", files={"file": ("a.png", png.getvalue(), "image/png")}
    ).json()["data"]["url"]
    r = httpx.get(url)
    assert r.headers["content-security-policy"].startswith("sandbox")
    assert r.headers["x-content-type-options"] == "nosniff"


# 11. Files of the data folder are the owner's alone; short secrets are refused.
def test_the_data_folder_and_secrets_are_private(tmp_path: Path) -> None:
    platform = Platform(tmp_path / "data")
    del platform.env["SHENGTU_JWT_SECRET"]  # generated into the folder
    platform.start()
    try:
        platform.new_user()
        mode = lambda p: stat.S_IMODE(os.stat(p).st_mode)  # noqa: E731
        assert mode(platform.data_dir) == 0o700
        for name in ("jwt_secret", "shengtu.db"):
            assert mode(platform.data_dir / name) == 0o600, name
    finally:
        platform.stop()
    short = cli({**platform.env, "SHENGTU_JWT_SECRET": "too-short"}, "migrate", check=False)
    assert short.returncode != 0 and "至少需要 32 个字符" in short.stderr


# 13. Slow headers are cut off; prompts are not logged whole at INFO.
def test_a_client_that_never_finishes_its_headers_is_cut_off(tmp_path: Path) -> None:
    platform = Platform(tmp_path, SHENGTU_HEADER_TIMEOUT="1").start()
    try:
        with socket.create_connection(("127.0.0.1", platform.port), timeout=5) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            started = time.monotonic()
            sock.settimeout(5)
            assert sock.recv(100) == b""  # closed by the server, with nothing said
            assert time.monotonic() - started < 3
        assert httpx.get(platform.url + "/healthz").status_code == 200
    finally:
        platform.stop()


def test_prompts_and_upstream_bodies_are_not_logged_whole(platform: Platform) -> None:
    user = platform.new_user(points=30)
    secret_words = "我的私密提示词-" + os.urandom(4).hex()
    done = user.wait(
        user.submit(modelName="sc_soraimg_text_1x1", prompt=secret_words)["data"]["taskNo"]
    )
    assert done["status"] == "completed"
    log = platform.server.log_text()
    assert "upstream_request" in log and secret_words not in log


@pytest.mark.parametrize("path", ["/console/console.js", "/console/console.css"])
def test_console_assets_are_served_with_their_types(platform: Platform, path: str) -> None:
    r = httpx.get(platform.url + path)
    assert r.status_code == 200 and r.headers["x-content-type-options"] == "nosniff"
    assert httpx.get(platform.url + "/console/other.js").status_code == 404
