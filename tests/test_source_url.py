"""A source URL is parsed into an allow-listed set of parts, and the drivers get those alone.

No services here: parsing, the allow-list, and the keywords handed to the drivers.
"""

from __future__ import annotations

import pytest

from worker.core.config import Settings, get_settings
from worker.core.errors import ConfigError, InputError, SourceRejected
from worker.sources.ambient import NO_FILE, without_driver_env
from worker.sources.hosts import HostAllow
from worker.sources.url import parse_source_url

PG = "postgresql://u:pw@127.0.0.1:5432/db"


@pytest.mark.parametrize(("query", "named"), [
    ("port=15433", "'port'"),
    ("hostaddr=127.0.0.1", "'hostaddr'"),
    ("host=/var/run/postgresql", "'host'"),
    ("passfile=/root/.pgpass", "'passfile'"),
    ("sslkeylogfile=/tmp/keys", "'sslkeylogfile'"),
    ("service=prod", "'service'"),
    ("servicefile=/etc/x", "'servicefile'"),
    ("options=-csearch_path%3Dx", "'options'"),
    ("sslcert=/etc/ssl/c.pem", "'sslcert'"),
    ("sslkey=/etc/ssl/k.pem", "'sslkey'"),
    ("pass%77ord=Secret", "'password'"),
    ("password=Secret", "'password'"),
    ("user=postgres", "'user'"),
    ("dbname=other", "'dbname'"),
    ("sslmode=require&target_session_attrs=any", "'target_session_attrs'"),
])
def test_a_parameter_outside_the_allow_list_is_refused_by_name(query, named):
    with pytest.raises(InputError) as refused:
        parse_source_url(f"{PG}?{query}")
    assert f"source URL parameter {named} is not allowed" in str(refused.value)
    assert "Secret" not in str(refused.value)


@pytest.mark.parametrize("url", [
    "postgresql://u:pw@127.0.0.1/db?sslrootcert=/etc/passwd",  # a file: never
    "postgresql://u:pw@127.0.0.1/db?sslmode=bogus",
    "postgresql://u:pw@127.0.0.1/db?sslmode=require&sslmode=disable",
    "postgresql://u:pw@127.0.0.1/db?sslmode=require&sslrootcert=system",
    "mysql://u:pw@127.0.0.1/db?ssl-mode=bogus",
    "mysql://u:pw@127.0.0.1/db?ssl-mode=REQUIRED&ssl-mode=DISABLED",
    "mysql://u:pw@127.0.0.1/db?ssl-ca=/etc/passwd",  # a file: never
    "mysql://u:pw@127.0.0.1/db?sslmode=require",  # PostgreSQL's, not MySQL's
    "mysql://u:pw@127.0.0.1/db?unix_socket=/run/mysqld/mysqld.sock",
])
def test_a_parameter_with_a_value_not_allowed_is_refused(url):
    with pytest.raises(InputError, match="source URL parameter"):
        parse_source_url(url)


def test_the_tls_options_an_operator_relies_on_are_kept():
    source = parse_source_url(f"{PG}?sslmode=verify-full&sslrootcert=system")
    assert source.params == (("sslmode", "verify-full"), ("sslrootcert", "system"))
    assert source.redacted.endswith("/db?sslmode=verify-full&sslrootcert=system")
    assert parse_source_url(f"{PG}?SSLMode=require").param("sslmode") == "require"


@pytest.mark.parametrize(("url", "words"), [
    ("postgresql:///db", "names no host"),
    ("postgresql://u@/db", "names no host"),
    ("postgresql://u:pw@/db?host=/var/run/postgresql", "names no host"),
    ("postgresql://u@%2Fvar%2Frun%2Fpostgresql/db", "one host name or IP address"),
    ("postgresql://u@h1,h2/db", "one host name or IP address"),
    ("postgresql://u@h1:5432,h2:5433/db", "port must be a number"),
    ("postgresql://u@[fe80::1%25eth0]/db", "one host name or IP address"),
    ("mysql://u@/db", "names no host"),
    ("mysql://u@unix(/tmp/mysql.sock)/db", "one host name or IP address"),
])
def test_unix_sockets_and_host_lists_are_refused(url, words):
    with pytest.raises(InputError, match=words):
        parse_source_url(url)


@pytest.mark.parametrize("url", ["postgresql://127.0.0.1/db", "postgresql://:pw@127.0.0.1/db",
                                 "mysql://127.0.0.1:3306/db"])
def test_a_url_without_a_user_is_refused_rather_than_sending_the_os_user(url):
    with pytest.raises(InputError, match="names no user"):
        parse_source_url(url)


def test_postgres_connects_with_the_parsed_parts_and_no_ambient_credentials():
    from worker.sources.postgres.source import connect_params

    source = parse_source_url("postgresql://app@localhost:5433/db?sslmode=require")
    params = connect_params(source, timeout_s=3)

    addresses = params["hostaddr"].split(",")
    assert "127.0.0.1" in addresses
    assert params["host"].split(",") == ["localhost"] * len(addresses)
    assert params["port"].split(",") == ["5433"] * len(addresses)
    assert (params["dbname"], params["user"], params["sslmode"]) == ("db", "app", "require")
    # given, even empty, so that libpq reads neither PGPASSWORD nor a password file, sends no
    # client certificate from the service's home and uses no Kerberos ticket
    assert params["password"] == "" and params["passfile"] == NO_FILE
    assert params["sslcertmode"] == "disable" and params["gssencmode"] == "disable"
    assert "service" not in params and "options" not in params


@pytest.mark.parametrize("given", ["VERIFY_IDENTITY", "verify_identity", "Verify_Identity"])
def test_mysql_ssl_mode_is_kept_in_upper_case_whatever_case_it_is_given_in(given):
    source = parse_source_url(f"mariadb://app:pw@db.example:3307/shop?SSL-Mode={given}")
    assert source.params == (("ssl-mode", "VERIFY_IDENTITY"),)
    assert source.redacted == "mariadb://app:***@db.example:3307/shop?ssl-mode=VERIFY_IDENTITY"


def test_a_mysql_ssl_mode_not_allowed_is_refused_naming_the_values():
    with pytest.raises(InputError) as refused:
        parse_source_url("mysql://u:Secret@127.0.0.1/db?ssl-mode=verify-full")
    assert str(refused.value) == ("source URL parameter ssl-mode must be one of DISABLED, "
                                  "PREFERRED, REQUIRED, VERIFY_CA, VERIFY_IDENTITY (in any case)")


def tls_keywords(url: str, monkeypatch, ca: str | None = None) -> tuple[dict, dict, dict]:
    """The keywords each driver gets for `url`: mysql-connector's, PyMySQL's (the binlog
    reader's) and the TLS options alone."""
    from worker.sources.mysql import tls
    from worker.sources.mysql.changes import _settings
    from worker.sources.mysql.source import connect_params

    if ca:
        monkeypatch.setenv("LITESHIFT_MYSQL_SSL_CA", ca)
    get_settings.cache_clear()
    try:
        source = parse_source_url(url)
        options = tls.driver_tls(source)
        return (connect_params(source, options.hosts[0], timeout_s=3), _settings(source),
                {"hosts": options.hosts, "required": options.required})
    finally:
        get_settings.cache_clear()


def test_each_ssl_mode_gives_both_drivers_the_same_policy(monkeypatch):
    import ssl

    url = "mysql://app:pw@127.0.0.1/db"
    connector, pymysql, _ = tls_keywords(url, monkeypatch)
    assert not any(k.startswith("ssl") for k in {**connector, **pymysql})  # PREFERRED: theirs
    connector, pymysql, _ = tls_keywords(url + "?ssl-mode=disabled", monkeypatch)
    assert connector["ssl_disabled"] is pymysql["ssl_disabled"] is True
    connector, pymysql, tls = tls_keywords(url + "?ssl-mode=required", monkeypatch)
    assert tls["required"] and pymysql["ssl"].verify_mode == ssl.CERT_NONE
    assert not connector.get("ssl_verify_cert") and not connector.get("ssl_disabled")
    connector, pymysql, tls = tls_keywords(url + "?ssl-mode=verify_ca", monkeypatch)
    system = ssl.get_default_verify_paths()
    assert connector["ssl_ca"] in (system.cafile, system.openssl_cafile)
    assert connector["ssl_verify_cert"] and not connector.get("ssl_verify_identity")
    assert pymysql["ssl"].verify_mode == ssl.CERT_REQUIRED and not pymysql["ssl"].check_hostname
    assert tls["hosts"] == ("127.0.0.1",)


def test_verify_identity_dials_the_name_the_certificate_must_carry(monkeypatch):
    import ssl

    ca = ssl.get_default_verify_paths().cafile or ssl.get_default_verify_paths().openssl_cafile
    connector, pymysql, tls = tls_keywords("mysql://app@localhost/db?ssl-mode=VERIFY_IDENTITY",
                                           monkeypatch, ca=ca)
    assert tls["hosts"] == ("localhost",) and connector["host"] == pymysql["host"] == "localhost"
    assert connector["ssl_verify_identity"] and connector["ssl_ca"] == ca
    assert pymysql["ssl"].check_hostname and pymysql["ssl"].verify_mode == ssl.CERT_REQUIRED


def test_verify_identity_needs_the_name_itself_in_a_network_allow_list():
    from worker.sources.mysql import tls

    url = "mysql://app@localhost/db?ssl-mode=VERIFY_IDENTITY"
    networks = parse_source_url(url, allow=HostAllow.parse("127.0.0.0/8,::1/128"))
    with pytest.raises(SourceRejected, match="LITESHIFT_SOURCE_ALLOW does not list the name"):
        tls.driver_tls(networks)
    named = parse_source_url(url, allow=HostAllow.parse("localhost"))
    assert tls.driver_tls(named).hosts == ("localhost",)


def test_the_operators_ca_bundle_must_be_a_pem_file(tmp_path):
    with pytest.raises(ValueError, match="readable PEM file of CA certificates"):
        Settings(mysql_ssl_ca=tmp_path / "missing.pem")
    (tmp_path / "junk.pem").write_text("not a certificate")
    with pytest.raises(ValueError, match="readable PEM file of CA certificates"):
        Settings(mysql_ssl_ca=tmp_path / "junk.pem")


def test_mysql_connects_over_tcp_to_a_checked_address():
    from worker.sources.mysql.source import connect_params

    source = parse_source_url("mysql://app:pw@localhost/db")
    params = connect_params(source, source.addresses()[0], timeout_s=3)
    assert params["host"] in ("127.0.0.1", "::1")  # an address: "localhost" is the socket
    assert (params["user"], params["password"], params["database"]) == ("app", "pw", "db")
    assert params["allow_local_infile"] is False


def test_the_drivers_variables_are_left_out_of_a_childs_environment():
    env = {"PATH": "/bin", "PGPASSWORD": "x", "PGSERVICEFILE": "/x", "PGSSLKEYLOGFILE": "/k",
           "MYSQL_PWD": "x", "LIBMYSQL_ENABLE_CLEARTEXT_PLUGIN": "1", "LITESHIFT_QUEUE": "q"}
    assert without_driver_env(env) == {"PATH": "/bin", "LITESHIFT_QUEUE": "q"}


# -- LITESHIFT_SOURCE_ALLOW ----------------------------------------------------------------

@pytest.mark.parametrize(("allow", "host", "permitted"), [
    ("", "127.0.0.1", True),
    ("10.0.0.0/8", "127.0.0.1", False),
    ("10.0.0.0/8,127.0.0.0/8", "127.0.0.1", True),
    ("127.0.0.1", "127.0.0.1", True),
    ("127.0.0.2/32", "127.0.0.1", False),
    ("db.internal", "127.0.0.1", False),
    ("LOCALHOST", "localhost", True),  # a listed name, whatever it resolves to
    ("127.0.0.0/8,::1/128", "localhost", True),
])
def test_the_allow_list_admits_listed_networks_and_names(allow, host, permitted):
    source = parse_source_url(f"postgresql://u@{host}/db", allow=HostAllow.parse(allow))
    if permitted:
        assert source.addresses()
    else:
        with pytest.raises(SourceRejected, match="LITESHIFT_SOURCE_ALLOW"):
            source.addresses()


def test_every_address_of_a_name_must_be_allowed():
    # localhost has 127.0.0.1 and, on most machines, ::1: only one network listed
    allow = HostAllow.parse("127.0.0.0/8")
    assert allow.permits("db", ["127.0.0.1"])
    assert not allow.permits("db", ["127.0.0.1", "10.1.2.3"])
    assert allow.permits("db", ["::ffff:127.0.0.5"])  # IPv4-mapped is its IPv4 address
    assert not allow.permits("db", [])


def test_a_bad_allow_list_entry_is_a_config_error_naming_the_setting(monkeypatch):
    monkeypatch.setenv("LITESHIFT_SOURCE_ALLOW", "10.0.0.0/8, /var/run/postgresql")
    get_settings.cache_clear()
    try:
        with pytest.raises(ConfigError, match="LITESHIFT_SOURCE_ALLOW.*/var/run/postgresql"):
            get_settings()
    finally:
        get_settings.cache_clear()
    assert Settings(source_allow=" 10.0.0.0/8 ,db.Internal").host_allow.names == {"db.internal"}
    # and it is a setting, not a source named ALLOW
    monkeypatch.setenv("LITESHIFT_SOURCE_ALLOW", "10.0.0.0/8")
    assert "ALLOW" not in Settings().sources
