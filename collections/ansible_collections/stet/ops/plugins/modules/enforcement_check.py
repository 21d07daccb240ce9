#!/usr/bin/python
# Copyright: STET Ops contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
# Ansible modules open with their documentation strings, so imports come after them.
# ruff: noqa: E402

from __future__ import annotations

DOCUMENTATION = r"""
module: enforcement_check
short_description: Gate on a tenant's enforcement escalation in the STET API
version_added: 1.0.0
description:
  - Reads C(GET /v1/enforcement/status) and C(GET /v1/enforcement/escalation) for a tenant
    (optionally one system) and fails when the escalation reaches O(fail_on). Usable as a
    deploy gate and by a health-check job.
  - Escalation is C(CRITICAL) when a system is C(MISSING), C(WARN) when one is C(STALE),
    C(NONE) otherwise.
  - Read-only; never reports a change.
  - Failures to get an answer are told apart in RV(error_kind) - C(network), C(tls),
    C(timeout), C(http) (with the API's error code in RV(error_code)), C(invalid_json) or
    C(invalid_argument) - and differ from a reached threshold, whose RV(error_kind) is
    C(escalation).
author:
  - STET Ops team (@stet-ops)
extends_documentation_fragment:
  - stet.ops.api
attributes:
  check_mode:
    description: Runs the same read-only checks as a normal run.
    support: full
  diff_mode:
    description: No diff is produced.
    support: none
options:
  system_id:
    description:
      - Only check this system. A system that never reported is C(MISSING).
    type: str
  fail_on:
    description:
      - Lowest escalation that fails the task. V(never) only reports.
    type: str
    choices: [WARN, CRITICAL, never]
    default: CRITICAL
"""

EXAMPLES = r"""
- name: Stop the deploy when any system of the tenant is stale or missing
  stet.ops.enforcement_check:
    url: https://api.example.com
    tenant_id: 6f1c0a52-3b8e-4e57-9a55-1d2c3b4a5f60
    api_key_file: /etc/stet/keys/monitor.token
    fail_on: WARN

- name: Report the escalation of one system without failing
  stet.ops.enforcement_check:
    url: https://api.example.com
    tenant_id: 6f1c0a52-3b8e-4e57-9a55-1d2c3b4a5f60
    api_key_file: /etc/stet/keys/monitor.token
    system_id: billing
    fail_on: never
  register: billing_enforcement
"""

RETURN = r"""
escalation:
  description: Escalation level of the tenant (or of O(system_id)).
  returned: when the API answered
  type: str
  sample: WARN
summary:
  description: Counts of systems by status.
  returned: when the API answered
  type: dict
  sample: {total_systems: 3, ok: 2, stale: 1, missing: 0}
affected_systems:
  description: Systems that are not OK, as the escalation endpoint lists them.
  returned: when the API answered
  type: list
  elements: raw
systems:
  description: Latest heartbeat and status of every system, from the status endpoint.
  returned: when the API answered
  type: list
  elements: dict
  sample: [{system_id: billing, status: STALE, enforced_correction_version: "...", reported_at: "..."}]
evaluated_at:
  description: When the API evaluated the escalation.
  returned: when the API answered
  type: str
threshold_reached:
  description: Whether the escalation reached O(fail_on).
  returned: when the API answered
  type: bool
error_kind:
  description: Kind of failure; C(escalation) when the threshold was reached.
  returned: on failure
  type: str
  sample: tls
error_code:
  description: The API's error code of an HTTP failure.
  returned: on an HTTP failure with an error body
  type: str
  sample: UNAUTHENTICATED
status:
  description: HTTP status of a failing answer.
  returned: on an HTTP or invalid_json failure
  type: int
"""

from ansible_collections.stet.ops.plugins.module_utils.stet_api import ApiError, StetApi, stet_api_module

LEVELS = ("NONE", "WARN", "CRITICAL")


def threshold_reached(escalation, fail_on):
    if fail_on == "never":
        return False
    if escalation not in LEVELS:
        raise ApiError("invalid_answer", f"the API returned an unknown escalation {escalation!r}")
    return LEVELS.index(escalation) >= LEVELS.index(fail_on)


def describe_affected(affected):
    names = []
    for system in affected:
        if isinstance(system, dict):
            names.append(f"{system.get('system_id')} ({system.get('status', 'not OK')})")
        else:
            names.append(str(system))
    return ", ".join(names) or "none"


def check(api, system_id, fail_on):
    query = {"system_id": system_id} if system_id else None
    _status, status_answer = api.request("GET", "/v1/enforcement/status", query=query)
    _status, escalation_answer = api.request("GET", "/v1/enforcement/escalation", query=query)
    try:
        result = dict(
            escalation=escalation_answer["escalation"],
            summary=escalation_answer["summary"],
            affected_systems=escalation_answer["affected_systems"],
            evaluated_at=escalation_answer.get("evaluated_at"),
            systems=status_answer["systems"],
        )
    except (KeyError, TypeError) as exc:
        raise ApiError("invalid_answer", f"the API's answer lacks the field {exc}") from None
    result["threshold_reached"] = threshold_reached(result["escalation"], fail_on)
    return result


def main():
    module = stet_api_module(
        system_id=dict(type="str"),
        fail_on=dict(type="str", choices=["WARN", "CRITICAL", "never"], default="CRITICAL"),
    )
    fail_on = module.params["fail_on"]
    try:
        result = check(StetApi(module.params), module.params["system_id"], fail_on)
    except ApiError as exc:
        module.fail_json(**exc.fail_arguments())
    if result["threshold_reached"]:
        summary = result["summary"]
        affected = describe_affected(result["affected_systems"])
        module.fail_json(
            msg=(
                f"enforcement escalation is {result['escalation']} (fails on {fail_on}): "
                f"{summary.get('stale', 0)} stale and {summary.get('missing', 0)} missing of "
                f"{summary.get('total_systems', 0)} systems; affected: {affected}"
            ),
            error_kind="escalation",
            **result,
        )
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
