from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.payments.providers import CASES, ProviderCase
from tests.payments.support import PayRig, rig
from tests.support import Platform


@pytest.fixture(params=sorted(CASES))
def case(request: pytest.FixtureRequest) -> ProviderCase:
    """Each scenario runs against every provider of tests/payments/providers.py."""
    return CASES[request.param]


@pytest.fixture
def pay(audited: Platform, case: ProviderCase) -> Iterator[PayRig]:
    """The session's platform with a method of its own served by the provider's double;
    the ledger audit must pass after the test."""
    with rig(audited, case) as made:
        yield made
