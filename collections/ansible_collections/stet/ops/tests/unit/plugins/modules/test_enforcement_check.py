import pytest
from ansible_collections.stet.ops.plugins.module_utils.stet_api import ApiError
from ansible_collections.stet.ops.plugins.modules.enforcement_check import (
    describe_affected,
    threshold_reached,
)


@pytest.mark.parametrize(
    ("escalation", "fail_on", "reached"),
    [
        ("NONE", "WARN", False),
        ("WARN", "WARN", True),
        ("CRITICAL", "WARN", True),
        ("WARN", "CRITICAL", False),
        ("CRITICAL", "CRITICAL", True),
        ("CRITICAL", "never", False),
    ],
)
def test_threshold(escalation, fail_on, reached):
    assert threshold_reached(escalation, fail_on) is reached


def test_unknown_escalation_is_an_error_not_a_pass():
    with pytest.raises(ApiError, match="unknown escalation 'PANIC'"):
        threshold_reached("PANIC", "WARN")


def test_affected_systems_are_named_with_their_status():
    affected = [{"system_id": "billing", "status": "STALE"}, "crm"]
    assert describe_affected(affected) == "billing (STALE), crm"
    assert describe_affected([]) == "none"
