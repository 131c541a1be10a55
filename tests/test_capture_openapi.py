"""schemathesis against the committed OpenAPI spec, on a real server over loopback: whatever a
client sends within or around the spec, no 5xx and no response that breaks the spec."""

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from kto_pipeline.capture.local import CaptureServer
from kto_pipeline.capture.server import OPENAPI_PATH

TOKEN = "test-token-0123456789abcdef"
schema = schemathesis.openapi.from_path(str(OPENAPI_PATH))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    # A generous rate: the fuzzer is not a client to throttle here (429 is tested elsewhere).
    srv = CaptureServer(
        tmp_path_factory.mktemp("capture"), TOKEN, capture={"rate_events_per_s": 1e6, "rate_burst_events": 10**7}
    )
    yield srv
    srv.stop()


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors_and_responses_match_the_spec(case, server):
    case.call_and_validate(base_url=server.url, headers={"Authorization": f"Bearer {TOKEN}"})
