# Copyright: STET Ops contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Options shared by the stet.ops modules that call the STET HTTP API."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  url:
    description:
      - Base URL of the STET API, without the C(/v1) path, for example
        C(https://api.example.com) or C(http://127.0.0.1:8000).
    type: str
    required: true
  tenant_id:
    description:
      - Tenant (UUID) the request is made for, sent as C(X-Tenant-Id).
    type: str
    required: true
  api_key:
    description:
      - The tenant's API key (C(stet_<key id>_<secret>)), sent in the C(Authorization) header
        as a bearer token.
      - Prefer O(api_key_file) so the key never enters Ansible variables.
      - Omit both when the API runs with C(STET_AUTH_REQUIRED=false).
    type: str
  api_key_file:
    description:
      - Path, on the managed host, of a file holding the API key, as written by
        M(stet.ops.api_key) with its O(stet.ops.api_key#module:token_file) option.
    type: path
  validate_certs:
    description:
      - Verify the server's TLS certificate. Only set V(false) against a test endpoint.
    type: bool
    default: true
  ca_path:
    description:
      - PEM file of the CA(s) that verify the server's certificate, instead of the system store.
    type: path
  timeout:
    description:
      - Seconds to wait for each HTTP answer.
    type: int
    default: 10
"""
