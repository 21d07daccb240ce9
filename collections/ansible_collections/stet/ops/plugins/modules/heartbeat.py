#!/usr/bin/python
# Copyright: STET Ops contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
# Ansible modules open with their documentation strings, so imports come after them.
# ruff: noqa: E402

from __future__ import annotations

DOCUMENTATION = r"""
module: heartbeat
short_description: Send an enforcement heartbeat for a system to the STET API
version_added: 1.0.0
description:
  - Sends C(POST /v1/enforcement/heartbeat) for one system of a tenant, as a downstream
    system (or a synthetic monitor standing in for one) does to tell STET it enforces the
    corrections up to a version.
  - Every call records a new heartbeat, so the task always reports a change.
  - Failures say what went wrong, in RV(error_kind) - C(network), C(tls), C(timeout), C(http)
    (with the API's error code), C(invalid_json) or C(invalid_argument).
author:
  - STET Ops team (@stet-ops)
extends_documentation_fragment:
  - stet.ops.api
attributes:
  check_mode:
    description: Nothing is sent; the task reports the change it would make.
    support: full
  diff_mode:
    description: No diff is produced.
    support: none
options:
  system_id:
    description:
      - Identifier of the downstream system sending the heartbeat.
    type: str
    required: true
  enforced_correction_version:
    description:
      - Timestamp (ISO 8601) of the newest correction the system enforces.
      - Defaults to the current UTC time on the managed host.
    type: str
"""

EXAMPLES = r"""
- name: Report that the billing system enforces every correction up to now
  stet.ops.heartbeat:
    url: https://api.example.com
    tenant_id: 6f1c0a52-3b8e-4e57-9a55-1d2c3b4a5f60
    api_key_file: /etc/stet/keys/monitor.token
    system_id: billing
    enforced_correction_version: "2026-01-15T09:30:00Z"
"""

RETURN = r"""
heartbeat:
  description: The API's answer to the heartbeat.
  returned: when sent
  type: dict
  sample: {heartbeat_id: 8a1e..., system_id: billing, reported_at: "2026-01-15T09:30:01Z"}
status:
  description: HTTP status of the answer.
  returned: when sent
  type: int
  sample: 201
sent:
  description: Whether the heartbeat was sent (false in check mode).
  returned: always
  type: bool
request:
  description: The body that was (or, in check mode, would have been) sent.
  returned: always
  type: dict
  sample: {system_id: billing, enforced_correction_version: "2026-01-15T09:30:00Z"}
error_kind:
  description: Kind of failure.
  returned: on failure
  type: str
  sample: timeout
"""

import datetime

from ansible_collections.stet.ops.plugins.module_utils.stet_api import ApiError, StetApi, stet_api_module


def main():
    module = stet_api_module(
        system_id=dict(type="str", required=True),
        enforced_correction_version=dict(type="str"),
    )
    version = module.params["enforced_correction_version"]
    if not version:
        version = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    body = dict(system_id=module.params["system_id"], enforced_correction_version=version)
    try:
        api = StetApi(module.params)
        if module.check_mode:
            module.exit_json(changed=True, sent=False, request=body)
        status, answer = api.request("POST", "/v1/enforcement/heartbeat", body=body)
    except ApiError as exc:
        module.fail_json(request=body, **exc.fail_arguments())
    module.exit_json(changed=True, sent=True, status=status, heartbeat=answer, request=body)


if __name__ == "__main__":
    main()
