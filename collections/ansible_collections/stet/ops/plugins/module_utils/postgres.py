# Copyright: STET Ops contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""PostgreSQL connection options (twin of doc_fragments/postgres.py) and connecting."""

from __future__ import annotations

import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.stet.ops.plugins.module_utils.secret_file import SecretFileError, read_secret_file

try:
    import psycopg2
    import psycopg2.extensions

    PSYCOPG2_IMPORT_ERROR = None
except ImportError:
    psycopg2 = None  # ensure_psycopg2() reports what to install
    PSYCOPG2_IMPORT_ERROR = traceback.format_exc()

# Options that describe the connection themselves; a dsn_file replaces all of them.
_DSN_REPLACES = ("login_host", "login_unix_socket", "port", "login_user", "login_password", "db")


def postgres_common_argument_spec():
    """Argument spec of the connection options documented in the stet.ops.postgres fragment."""
    return dict(
        dsn_file=dict(type="path"),
        login_host=dict(type="str", aliases=["host"]),
        login_unix_socket=dict(type="path", aliases=["unix_socket"]),
        port=dict(type="int", aliases=["login_port"]),
        login_user=dict(type="str", aliases=["login"]),
        login_password=dict(type="str", no_log=True),
        db=dict(type="str", aliases=["login_db"]),
        ssl_mode=dict(
            type="str",
            default="prefer",
            choices=["disable", "allow", "prefer", "require", "verify-ca", "verify-full"],
        ),
        ca_cert=dict(type="path", aliases=["ssl_rootcert"]),
        connect_timeout=dict(type="int", default=10),
    )


def postgres_mutually_exclusive():
    return [["dsn_file", option] for option in _DSN_REPLACES]


def postgres_module(**options):
    """An AnsibleModule with the connection options plus ``options``, check mode, psycopg2 present."""
    argument_spec = postgres_common_argument_spec()
    argument_spec.update(options)
    module = AnsibleModule(
        argument_spec=argument_spec,
        mutually_exclusive=postgres_mutually_exclusive(),
        supports_check_mode=True,
    )
    ensure_psycopg2(module)
    return module


def ensure_psycopg2(module):
    if PSYCOPG2_IMPORT_ERROR is not None:
        module.fail_json(msg=missing_required_lib("psycopg2"), exception=PSYCOPG2_IMPORT_ERROR)


def _redact(message, secrets):
    for secret in secrets:
        if secret:
            message = message.replace(secret, "********")
    return message


def connection_arguments(params):
    """Return (dsn, keyword arguments) for psycopg2.connect from module parameters.

    Raises SecretFileError when the dsn_file cannot be read or holds no valid connection string.
    """
    keywords = dict(
        connect_timeout=params["connect_timeout"],
        application_name="stet.ops",
    )
    if params["ca_cert"]:
        keywords["sslrootcert"] = params["ca_cert"]
    if params["dsn_file"]:
        dsn = read_secret_file(params["dsn_file"], "dsn_file")
        try:
            parsed = psycopg2.extensions.parse_dsn(dsn)
        except psycopg2.ProgrammingError:
            # libpq's message quotes the offending part, which may be the password.
            raise SecretFileError(
                f"dsn_file {params['dsn_file']} does not hold a valid PostgreSQL URL or key=value string"
            ) from None
        # The file's sslmode wins over the option's default; an explicit non-default option wins.
        if "sslmode" not in parsed or params["ssl_mode"] != "prefer":
            keywords["sslmode"] = params["ssl_mode"]
        return dsn, keywords
    keywords.update(
        host=params["login_host"] or params["login_unix_socket"],
        port=params["port"] or 5432,
        user=params["login_user"] or "postgres",
        dbname=params["db"] or "postgres",
        sslmode=params["ssl_mode"],
    )
    if params["login_password"]:
        keywords["password"] = params["login_password"]
    return "", {key: value for key, value in keywords.items() if value is not None}


def connect(module):
    """Open a psycopg2 connection (autocommit off) or fail_json with a message free of secrets."""
    try:
        dsn, keywords = connection_arguments(module.params)
    except SecretFileError as exc:
        module.fail_json(msg=str(exc))
    try:
        return psycopg2.connect(dsn, **keywords)
    except psycopg2.Error as exc:
        secrets = [keywords.get("password"), dsn]
        if dsn:
            secrets.append(psycopg2.extensions.parse_dsn(dsn).get("password"))
        module.fail_json(msg="unable to connect to PostgreSQL: " + _redact(str(exc).strip(), secrets))
