"""Property-based testing of the JSON API against its own OpenAPI document (schemathesis):
no input, signed in as any role, makes the server fail (5xx), and no answer carries an MRN
to a role that may not see one."""

from __future__ import annotations

from typing import Any

import pytest

from monitor.web import create_app
from tests.monitor.trial_setup import EXAMPLE_MRNS
from tests.monitor.web.conftest import Site

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402


@pytest.fixture(scope="module")
def api_schema(site: Site) -> Any:
    app = create_app(site.settings, site.engine, clock=site.clock)
    return schemathesis.openapi.from_asgi("/openapi.json", app)


@pytest.fixture(scope="module")
def cookies(site: Site) -> dict[str, dict[str, str]]:
    return {
        name: {"hiro_session": site.login(name).cookies["hiro_session"]}
        for name in ("viewer", "coord", "tech")
    }


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_no_generated_request_makes_the_api_fail(case: Any, cookies: dict[str, dict[str, str]]) -> None:
    for role, jar in cookies.items():
        response = case.call(cookies=jar)
        assert response.status_code < 500, (role, case.path, response.text[:200])
        if role != "coord" and response.status_code == 200:
            assert not [mrn for mrn in EXAMPLE_MRNS if mrn in response.text], (role, case.path)
