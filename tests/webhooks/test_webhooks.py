"""Webhooks that arrive: Standard Webhooks signatures checked by the ``standardwebhooks``
package as a real receiver would, retries with the same id, attempts logged, failing
endpoints disabled, the private-network guard, and a delivering worker killed mid-send."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.support import Platform, wait_for
from tests.webhooks.support import LoopbackReceiver, detail, endpoint, messages


@dataclass
class Delivery:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver(LoopbackReceiver):
    """A receiver on loopback whose paths misbehave on purpose:

    ``/ok`` answers 204; ``/flaky`` 500 to a message's first three attempts, then 200;
    ``/hang`` sleeps past the sender's time limit on a message's first attempt;
    ``/broken`` always 503; ``/moved`` redirects to ``/ok``; ``/stall`` sleeps 60 s on a
    message's first attempt."""

    deliveries: list[Delivery] = field(default_factory=list)

    def __post_init__(self) -> None:
        receiver = self
        seen: Counter[tuple[str, str]] = Counter()
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                headers = {k.lower(): v for k, v in self.headers.items()}
                with lock:
                    receiver.deliveries.append(Delivery(self.path, headers, body))
                    seen[(self.path, headers.get("webhook-id", ""))] += 1
                    nth = seen[(self.path, headers.get("webhook-id", ""))]
                if self.path in ("/stall", "/hang") and nth == 1:
                    time.sleep(60 if self.path == "/stall" else 3)
                status = 204
                if self.path == "/flaky" and nth <= 3:
                    status = 500
                elif self.path == "/broken":
                    status = 503
                elif self.path == "/moved":
                    status = 302
                try:
                    self.send_response(status)
                    if status == 302:
                        self.send_header("Location", "/ok")
                    payload = b"not yet, attempt %d" % nth if status >= 300 else b""
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:
                    pass

        self.serve(Handler)

    def to(self, path: str) -> list[Delivery]:
        return [d for d in list(self.deliveries) if d.path == path]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def webhook_env(receiver: Receiver) -> dict[str, str]:
    return {
        "SHENGTU_WEBHOOK_TRUSTED_ORIGINS": receiver.origin,
        "SHENGTU_WEBHOOK_BACKOFF": "0.3,0.3,0.3,0.3",
        "SHENGTU_WEBHOOK_TIMEOUT_SECONDS": "1",
        "SHENGTU_WEBHOOK_POLL_SECONDS": "0.1",
    }


def verified(secret: str, delivery: Delivery) -> dict[str, Any]:
    return Webhook(secret).verify(delivery.body, delivery.headers)  # type: ignore[no-any-return]


def test_webhooks_arrive_signed_retry_with_one_id_and_give_up_loudly(
    own_platform: Callable[..., Platform], receiver: Receiver
) -> None:
    with own_platform(**webhook_env(receiver)) as platform:
        user = platform.new_user(points=200)
        ok = endpoint(user, receiver.origin + "/ok")
        assert ok["secret"].startswith("whsec_") and ok["enabled"]
        listed = user.client.get("/user/webhooks").json()["data"]
        assert [e["url"] for e in listed] == [receiver.origin + "/ok"]
        assert ok["secret"] not in str(listed)

        # A completed and a failed task: each event once, signed, verified by the package.
        done = user.submit(modelName="sc_soraimg_text_1x1", prompt="晚霞")["data"]["taskNo"]
        failed = user.submit(modelName="sc_soraimg_text_1x1", prompt="[sandbox:fail] 猫")
        failed_no = failed["data"]["taskNo"]
        arrived = wait_for(
            "both events", lambda: len(receiver.to("/ok")) >= 2 and receiver.to("/ok")
        )
        events = {
            verified(ok["secret"], d)["data"]["taskNo"]: verified(ok["secret"], d) for d in arrived
        }
        assert events[done]["type"] == "task.completed"
        assert events[done]["data"]["resultUrl"].startswith(platform.url + "/files/")
        assert events[failed_no]["type"] == "task.failed"
        assert "内容安全" in events[failed_no]["data"]["errorMessage"]
        # No request says which language its receiver reads: the reason in both.
        reason = events[failed_no]["data"]["errorMessage"].split(":", 1)[1]
        assert events[failed_no]["data"]["errorMessageEn"] == f"Generation failed: {reason}"
        assert events[done]["data"]["errorMessageEn"] is None
        forged = Delivery(
            "/ok", {**arrived[0].headers, "webhook-signature": "v1,AAAA"}, arrived[0].body
        )
        with pytest.raises(WebhookVerificationError):
            verified(ok["secret"], forged)
        wait_for("delivered", lambda: all(m["status"] == "delivered" for m in messages(user)))

        # A per-task callbackUrl needs its signing secret first, then is signed with it.
        refused = user.submit(
            modelName="sc_soraimg_text_1x1", prompt="回调", callbackUrl=receiver.origin + "/flaky"
        )
        assert refused["code"] == 400 and "callback-secret" in refused["message"]
        callback_secret = user.client.post("/user/webhooks/callback-secret").json()["data"][
            "secret"
        ]
        user.client.delete(f"/user/webhooks/{ok['id']}")
        task = user.submit(
            modelName="sc_soraimg_text_1x1", prompt="回调", callbackUrl=receiver.origin + "/flaky"
        )["data"]["taskNo"]
        # /flaky refuses three times, then takes it: four attempts, one id, all logged.
        flaky = wait_for(
            "the fourth attempt", lambda: len(receiver.to("/flaky")) >= 4 and receiver.to("/flaky")
        )
        assert len({d.headers["webhook-id"] for d in flaky}) == 1
        assert verified(callback_secret, flaky[-1])["data"]["taskNo"] == task
        msg = wait_for(
            "delivered after retries",
            lambda: [m for m in messages(user, taskNo=task) if m["status"] == "delivered"],
        )[0]
        log = detail(user, msg["id"])["attemptLog"]
        assert [a["statusCode"] for a in log] == [500, 500, 500, 204]
        assert log[0]["response"] == "not yet, attempt 1" and all(a["latencyMs"] >= 0 for a in log)

        # A hanging receiver: the attempt times out, is logged, and the retry gets through.
        hang = endpoint(user, receiver.origin + "/hang")
        test = user.client.post(f"/user/webhooks/{hang['id']}/test").json()["data"]
        wait_for("the hang retried", lambda: detail(user, test["id"])["status"] == "delivered")
        log = detail(user, test["id"])["attemptLog"]
        assert log[0]["statusCode"] is None and "超时" in log[0]["error"]
        assert log[-1]["statusCode"] == 204
        assert verified(hang["secret"], receiver.to("/hang")[-1])["type"] == "webhook.test"

        # An endpoint that never answers 2xx: five attempts, then failed and disabled,
        # saying why. A redirect is a failure too, never followed.
        user.client.delete(f"/user/webhooks/{hang['id']}")
        for path in ("/broken", "/moved"):
            bad = endpoint(user, receiver.origin + path)
            sent = user.client.post(f"/user/webhooks/{bad['id']}/test").json()["data"]
            wait_for(
                f"{path} given up",
                lambda sent=sent: detail(user, sent["id"])["status"] == "failed",
            )
            state = next(
                e for e in user.client.get("/user/webhooks").json()["data"] if e["id"] == bad["id"]
            )
            assert state["enabled"] is False and sent["id"] in state["disabledReason"]
            assert len(detail(user, sent["id"])["attemptLog"]) == 5
        assert not receiver.to("/ok")[2:], "a redirect was followed"
        assert len({d.headers["webhook-id"] for d in receiver.to("/broken")}) == 1

        # Redelivery: the same id again, after the endpoint is enabled.
        again = user.client.post(f"/user/webhooks/messages/{msg['id']}/redeliver").json()
        assert again["code"] == 200, again
        wait_for("redelivered", lambda: len(receiver.to("/flaky")) >= 5)
        assert receiver.to("/flaky")[-1].headers["webhook-id"] == msg["id"]

        # Private addresses are refused, at creation and at submit.
        for url in (
            "http://10.0.0.7/hook",
            "http://169.254.169.254/latest",
            "http://localhost:1/x",
        ):
            body = user.client.post("/user/webhooks", json={"url": url}).json()
            assert body["code"] == 400 and "回调地址" in body["message"], body
            body = user.submit(modelName="sc_soraimg_text_1x1", prompt="x", callbackUrl=url)
            assert body["code"] == 400, body

        # Another user sees none of it.
        other = platform.new_user()
        assert other.client.get("/user/webhooks").json()["data"] == []
        assert messages(other) == []
        assert other.client.get(f"/user/webhooks/messages/{msg['id']}").status_code == 404
        assert (
            other.client.post(f"/user/webhooks/messages/{msg['id']}/redeliver").status_code == 404
        )
        platform.audit()


def test_a_worker_killed_mid_delivery_leaves_the_message_to_the_next(
    tmp_path: Path, receiver: Receiver
) -> None:
    platform = Platform.with_sandbox_process(tmp_path, worker=False, **webhook_env(receiver))
    platform.start()
    try:
        user = platform.new_user(points=100)
        # /stall holds the first delivery open: the worker is killed while it waits.
        hook = endpoint(user, receiver.origin + "/stall")
        worker = platform.spawn("worker")
        task = user.submit(modelName="sc_soraimg_text_1x1", prompt="被杀的投递")["data"]["taskNo"]
        first = wait_for("the first attempt", lambda: receiver.to("/stall"))[0]
        worker.kill()
        assert user.wait(task)["status"] == "completed"
        msg = messages(user)[0]
        assert msg["status"] == "pending" and msg["attempts"] == 0

        # The next worker sends it again once the dead one's hold runs out (1 s + 10 s).
        platform.spawn("worker")
        second = wait_for("the retry", lambda: receiver.to("/stall")[1:], timeout=30)[0]
        assert second.headers["webhook-id"] == first.headers["webhook-id"] == msg["id"]
        assert verified(hook["secret"], second)["data"]["taskNo"] == task
        assert first.body == second.body
        wait_for("delivered", lambda: detail(user, msg["id"])["status"] == "delivered")
        assert [a["statusCode"] for a in detail(user, msg["id"])["attemptLog"]] == [204]
    finally:
        platform.stop()
