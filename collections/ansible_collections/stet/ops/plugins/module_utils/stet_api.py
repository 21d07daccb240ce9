# Copyright: STET Ops contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""STET HTTP API options (twin of doc_fragments/api.py) and a client whose failures are typed."""

from __future__ import annotations

import http.client
import json
import ssl
import uuid
from urllib.error import HTTPError, URLError
from urllib.parse import urlencode

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.urls import open_url
from ansible_collections.stet.ops.plugins.module_utils.secret_file import SecretFileError, read_secret_file

# Kinds of failure a caller can tell apart (returned as error_kind).
NETWORK, TLS, TIMEOUT, HTTP, INVALID_JSON = "network", "tls", "timeout", "http", "invalid_json"


def stet_api_argument_spec():
    return dict(
        url=dict(type="str", required=True),
        tenant_id=dict(type="str", required=True),
        api_key=dict(type="str", no_log=True),
        api_key_file=dict(type="path"),
        validate_certs=dict(type="bool", default=True),
        ca_path=dict(type="path"),
        timeout=dict(type="int", default=10),
    )


def stet_api_module(**options):
    """An AnsibleModule with the API options plus ``options``, supporting check mode."""
    argument_spec = stet_api_argument_spec()
    argument_spec.update(options)
    return AnsibleModule(
        argument_spec=argument_spec,
        mutually_exclusive=[["api_key", "api_key_file"]],
        supports_check_mode=True,
    )


class ApiError(Exception):
    def __init__(self, kind, message, status=None, error_code=None):
        super().__init__(message)
        self.kind = kind
        self.status = status
        self.error_code = error_code

    def fail_arguments(self):
        """Keyword arguments of fail_json describing this failure."""
        return dict(msg=str(self), error_kind=self.kind, status=self.status, error_code=self.error_code)


def _http_error(url, status, body):
    try:
        error = json.loads(body)["error"]
        code, message = error["code"], error.get("message", "")
        request_id = error.get("request_id")
    except (ValueError, KeyError, TypeError):
        return ApiError(HTTP, f"{url} answered HTTP {status}: {body[:200]!r}", status=status)
    suffix = f" (request_id {request_id})" if request_id else ""
    return ApiError(HTTP, f"{url} answered HTTP {status} {code}: {message}{suffix}", status, code)


def classify_transport_error(url, exc, timeout):
    """Map an exception raised while talking to ``url`` to an ApiError of the right kind."""
    reason = exc.reason if isinstance(exc, URLError) and not isinstance(exc, HTTPError) else exc
    if isinstance(reason, TimeoutError) or "timed out" in str(reason):
        return ApiError(TIMEOUT, f"{url} did not answer within {timeout}s")
    if isinstance(reason, (ssl.SSLError, ssl.CertificateError)):
        return ApiError(TLS, f"TLS handshake with {url} failed: {reason}")
    return ApiError(NETWORK, f"cannot reach {url}: {reason}")


class StetApi:
    def __init__(self, params):
        """Raise ApiError when the tenant id is not a UUID or the key file cannot be read."""
        try:
            self.tenant_id = str(uuid.UUID(params["tenant_id"]))
        except ValueError:
            raise ApiError("invalid_argument", f"tenant_id {params['tenant_id']!r} is not a UUID") from None
        self.base_url = params["url"].rstrip("/")
        self.params = params
        self.api_key = params["api_key"]
        if params["api_key_file"]:
            try:
                self.api_key = read_secret_file(params["api_key_file"], "api_key_file")
            except SecretFileError as exc:
                raise ApiError("invalid_argument", str(exc)) from None

    def request(self, method, path, body=None, query=None):
        """Return the decoded JSON answer of a 2xx response; raise ApiError otherwise."""
        url = self.base_url + path
        if query:
            url += "?" + urlencode(query)
        headers = {"Accept": "application/json", "X-Tenant-Id": self.tenant_id}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        data = None
        if body is not None:
            data = json.dumps(body)
            headers["Content-Type"] = "application/json"
        timeout = self.params["timeout"]
        try:
            response = open_url(
                url,
                data=data,
                headers=headers,
                method=method,
                timeout=timeout,
                validate_certs=self.params["validate_certs"],
                ca_path=self.params["ca_path"],
                follow_redirects="none",
                use_netrc=False,
            )
            status, raw = response.status, response.read()
        except HTTPError as exc:
            raise _http_error(url, exc.code, exc.read().decode("utf-8", "replace")) from None
        except (URLError, OSError, http.client.HTTPException) as exc:
            raise classify_transport_error(url, exc, timeout) from None
        try:
            return status, json.loads(raw)
        except ValueError:
            excerpt = raw.decode("utf-8", "replace")[:200]
            message = f"{url} answered HTTP {status} with a body that is not JSON: {excerpt!r}"
            raise ApiError(INVALID_JSON, message, status) from None
