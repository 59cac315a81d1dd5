"""易支付's signature and amounts, against the protocol's own spelling."""

from __future__ import annotations

import hashlib

import pytest

from shengtu.payments.providers.epay import fen, money, sign, signed

KEY = "f872e1c662d41cf218b5dfa8328ae455"


def test_the_signature_is_md5_over_the_sorted_non_empty_fields_and_the_key() -> None:
    fields = {
        "pid": "1001",
        "type": "alipay",
        "out_trade_no": "TEST123456",
        "notify_url": "http://example.com/notify",
        "return_url": "",  # empty: left out
        "name": "测试商品",
        "money": "0.01",
        "sign": "ignored",
        "sign_type": "MD5",
    }
    text = (
        "money=0.01&name=测试商品&notify_url=http://example.com/notify"
        "&out_trade_no=TEST123456&pid=1001&type=alipay"
    )
    expected = hashlib.md5((text + KEY).encode()).hexdigest()
    assert sign(fields, KEY) == expected
    made = signed(fields, KEY)
    assert made["sign"] == expected and made["sign_type"] == "MD5" and "return_url" not in made
    assert sign(fields, KEY + "x") != expected


@pytest.mark.parametrize(
    ("text", "cents"), [("10.00", 1000), ("10", 1000), ("0.5", 50), ("0.01", 1), (" 3.20 ", 320)]
)
def test_amounts_are_read_in_fen(text: str, cents: int) -> None:
    assert fen(text) == cents


@pytest.mark.parametrize("text", ["", "abc", "1.001", "-1.00", "NaN", "Infinity", "1e400"])
def test_amounts_that_are_not_amounts_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        fen(text)


def test_amounts_are_written_in_yuan() -> None:
    assert [money(a) for a in (1, 50, 1000, 123456)] == ["0.01", "0.50", "10.00", "1234.56"]
