"""The API client against real local HTTP(S) servers: each failure must surface as its own kind."""

import json
import socket
import ssl
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from ansible_collections.stet.ops.plugins.module_utils.stet_api import ApiError, StetApi

TENANT = "6f1c0a52-3b8e-4e57-9a55-1d2c3b4a5f60"


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        self.server.seen_headers = dict(self.headers)
        if self.path == "/slow":
            time.sleep(2)
        answers = {
            "/json": (200, "application/json", json.dumps({"ok": True})),
            "/slow": (200, "application/json", "{}"),
            "/html": (200, "text/html", "<html>proxy error page</html>"),
            "/denied": (
                401,
                "application/json",
                json.dumps({"error": {"code": "UNAUTHENTICATED", "message": "no key", "request_id": "r1"}}),
            ),
            "/broken": (502, "text/plain", "bad gateway"),
        }
        status, content_type, body = answers[self.path.split("?")[0]]
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args):
        pass


def serve(server):
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server


@pytest.fixture(scope="module")
def http_server():
    server = serve(ThreadingHTTPServer(("127.0.0.1", 0), Handler))
    yield server
    server.shutdown()


@pytest.fixture(scope="module")
def https_server(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tls")
    key, cert = directory / "key.pem", directory / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    yield serve(server)
    server.shutdown()


def client(url, **overrides):
    params = dict(url=url, tenant_id=TENANT, api_key=None, api_key_file=None)
    params.update(validate_certs=True, ca_path=None, timeout=1)
    params.update(overrides)
    return StetApi(params)


def base(server, scheme="http"):
    return f"{scheme}://127.0.0.1:{server.server_address[1]}"


def failure(api, path):
    with pytest.raises(ApiError) as caught:
        api.request("GET", path)
    return caught.value


def test_json_answer_is_decoded_and_tenant_and_key_are_sent(http_server, tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text("stet_abc_def\n")
    status, answer = client(base(http_server), api_key_file=str(key_file)).request("GET", "/json")
    assert (status, answer) == (200, {"ok": True})
    assert http_server.seen_headers["X-Tenant-Id"] == TENANT
    assert http_server.seen_headers["Authorization"] == "Bearer stet_abc_def"


def test_http_error_carries_the_api_error_code(http_server):
    error = failure(client(base(http_server)), "/denied")
    assert (error.kind, error.status, error.error_code) == ("http", 401, "UNAUTHENTICATED")
    assert "UNAUTHENTICATED: no key (request_id r1)" in str(error)


def test_http_error_without_a_json_body_is_still_an_http_error(http_server):
    error = failure(client(base(http_server)), "/broken")
    assert (error.kind, error.status) == ("http", 502) and "bad gateway" in str(error)


def test_non_json_success_is_invalid_json(http_server):
    error = failure(client(base(http_server)), "/html")
    assert error.kind == "invalid_json" and "proxy error page" in str(error)


def test_slow_answer_is_a_timeout(http_server):
    error = failure(client(base(http_server)), "/slow")
    assert error.kind == "timeout" and "within 1s" in str(error)


def test_refused_connection_is_a_network_error():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    error = failure(client(f"http://127.0.0.1:{port}"), "/json")
    assert error.kind == "network" and "cannot reach" in str(error)


def test_untrusted_certificate_is_a_tls_error(https_server):
    error = failure(client(base(https_server, "https")), "/json")
    assert error.kind == "tls" and "certificate" in str(error).lower()


def test_validate_certs_false_accepts_the_test_certificate(https_server):
    api = client(base(https_server, "https"), validate_certs=False)
    assert api.request("GET", "/json")[1] == {"ok": True}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (dict(tenant_id="acme"), "tenant_id 'acme' is not a UUID"),
        (dict(api_key_file="/nonexistent/key"), "api_key_file /nonexistent/key does not exist"),
    ],
)
def test_bad_arguments_fail_before_any_request(overrides, message):
    with pytest.raises(ApiError, match=message) as caught:
        client("http://127.0.0.1:9", **overrides)
    assert caught.value.kind == "invalid_argument"
