"""Settings: every knob's parser, defaults, precedence and the one-line error.

Parsers are checked against small reference implementations with hypothesis,
because a start-up knob that silently accepts a wrong value is worse than one
that refuses to start.
"""

from __future__ import annotations

import ipaddress
import string
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from guildnet.config import (
    KNOBS,
    ConfigError,
    ListenAddress,
    Settings,
    load_settings,
    origin_of,
    parse_bool,
    parse_dns_label,
    parse_dns_name,
    parse_hostport,
    parse_listen,
    parse_origin,
    parse_path,
    parse_port,
    parse_url,
)

# The spec's "Environment Knobs" plus the two paths the issue adds.
SPEC_KNOBS = {
    "LISTEN_LOCAL",
    "FRONTEND_ORIGIN",
    "HOSTAPP_API_PROXY_URL",
    "HOSTAPP_EMBED_OPERATOR",
    "HOSTAPP_DISABLE_API_PROXY",
    "HOSTAPP_USE_PORT_FORWARD",
    "K8S_NAMESPACE",
    "WORKSPACE_LB",
    "WORKSPACE_LB_POOL",
    "WORKSPACE_DOMAIN",
    "INGRESS_CLASS_NAME",
    "CERT_MANAGER_ISSUER",
    "RETHINKDB_ADDR",
    "RETHINKDB_SERVICE_NAME",
    "RETHINKDB_NAMESPACE",
    "KUBECONFIG",
    "GUILDNET_STATE_DIR",
}
TRUE_WORDS = ("1", "true", "yes", "on", "y", "t")
FALSE_WORDS = ("0", "false", "no", "off", "n", "f")
LABEL_CHARS = string.ascii_lowercase + string.digits + "-"

# One accepted and one rejected value per knob, with the parsed result.
GOOD: dict[str, tuple[str, str, Any]] = {
    "LISTEN_LOCAL": ("listen", "[::1]:9443", ListenAddress("::1", 9443)),
    "FRONTEND_ORIGIN": (
        "frontend_origin",
        "https://UI.Example.com:8443/",
        "https://ui.example.com:8443",
    ),
    "HOSTAPP_API_PROXY_URL": ("api_proxy_url", "http://127.0.0.1:8001/", "http://127.0.0.1:8001"),
    "HOSTAPP_EMBED_OPERATOR": ("embed_operator", "off", False),
    "HOSTAPP_DISABLE_API_PROXY": ("disable_api_proxy", "YES", True),
    "HOSTAPP_USE_PORT_FORWARD": ("use_port_forward", "1", True),
    "K8S_NAMESPACE": ("namespace", "team-a", "team-a"),
    "WORKSPACE_LB": ("workspace_lb", "True", True),
    "WORKSPACE_LB_POOL": ("workspace_lb_pool", " pool-1 ", "pool-1"),
    "WORKSPACE_DOMAIN": ("workspace_domain", "WS.Example.org.", "ws.example.org"),
    "INGRESS_CLASS_NAME": ("ingress_class_name", "nginx", "nginx"),
    "CERT_MANAGER_ISSUER": ("cert_manager_issuer", "letsencrypt", "letsencrypt"),
    "RETHINKDB_ADDR": ("rethinkdb_addr", "db.example:28015", ("db.example", 28015)),
    "RETHINKDB_SERVICE_NAME": ("rethinkdb_service_name", "rdb", "rdb"),
    "RETHINKDB_NAMESPACE": ("rethinkdb_namespace", "data", "data"),
    "KUBECONFIG": ("kubeconfig", "/etc/kube/config", Path("/etc/kube/config")),
    "GUILDNET_STATE_DIR": ("state_dir", "/var/lib/guildnet", Path("/var/lib/guildnet")),
}
BAD: dict[str, str] = {
    "LISTEN_LOCAL": "127.0.0.1:99999",
    "FRONTEND_ORIGIN": "ftp://x",
    "HOSTAPP_API_PROXY_URL": "127.0.0.1:8001",
    "HOSTAPP_EMBED_OPERATOR": "maybe",
    "HOSTAPP_DISABLE_API_PROXY": "enable",
    "HOSTAPP_USE_PORT_FORWARD": "2",
    "K8S_NAMESPACE": "Team_A",
    "WORKSPACE_LB": "yesno",
    "WORKSPACE_DOMAIN": "bad_domain.example",
    "RETHINKDB_ADDR": "db.example",
    "RETHINKDB_SERVICE_NAME": "-rdb",
    "RETHINKDB_NAMESPACE": "a.b",
}
# Free-text knobs accept anything; the paths accept anything non-blank.
FREE_TEXT = {"WORKSPACE_LB_POOL", "INGRESS_CLASS_NAME", "CERT_MANAGER_ISSUER"}


def is_dns_label(text: str) -> bool:
    """Reference without regular expressions: RFC 1123 label, lower case."""
    if not 1 <= len(text) <= 63:
        return False
    if any(c not in LABEL_CHARS for c in text):
        return False
    return text[0] != "-" and text[-1] != "-"


def is_dns_name(text: str) -> bool:
    return 1 <= len(text) <= 253 and all(is_dns_label(part) for part in text.split("."))


def ascii_lower(text: str) -> str:
    return "".join(chr(ord(c) + 32) if "A" <= c <= "Z" else c for c in text)


# --- the knob table ---------------------------------------------------------


def test_every_spec_knob_is_configurable_once() -> None:
    envs = [k.env for k in KNOBS]
    options = [k.option for k in KNOBS]
    assert set(envs) >= SPEC_KNOBS  # later capabilities add knobs of their own
    assert len(set(envs)) == len(envs)
    assert len(set(options)) == len(options)
    assert set(GOOD) == SPEC_KNOBS, "the test table covers every spec knob"


@pytest.mark.parametrize("knob", KNOBS, ids=lambda k: k.env)
def test_documented_default_parses(knob: Any) -> None:
    if knob.default is not None:
        knob.parse(knob.default)


def test_defaults() -> None:
    s = load_settings({})
    assert s.listen == ListenAddress("127.0.0.1", 8090)
    assert s.frontend_origin == "https://127.0.0.1:8090"
    assert s.api_proxy_url is None
    assert s.embed_operator is True
    assert (s.disable_api_proxy, s.use_port_forward, s.workspace_lb) == (False, False, False)
    assert s.namespace == "default"
    assert s.workspace_lb_pool is s.workspace_domain is s.ingress_class_name is None
    assert s.cert_manager_issuer is None and s.rethinkdb_addr is None
    assert s.rethinkdb_service_name == "rethinkdb"
    assert s.rethinkdb_namespace == "default"
    assert s.kubeconfig == Path("~/.guildnet/kubeconfig").expanduser()
    assert s.state_dir == Path("~/.guildnet/state").expanduser()
    assert s.certs_dir == s.state_dir / "certs"
    assert s.clusters_dir == s.state_dir / "clusters"
    assert s.in_cluster is False


def test_blank_values_mean_default() -> None:
    s = load_settings({"LISTEN_LOCAL": "  ", "HOSTAPP_EMBED_OPERATOR": ""})
    assert s.listen == ListenAddress("127.0.0.1", 8090)
    assert s.embed_operator is True


@pytest.mark.parametrize("env", sorted(GOOD))
def test_each_knob_parses_from_the_environment(env: str) -> None:
    attr, raw, expected = GOOD[env]
    assert getattr(load_settings({env: raw}), attr) == expected


@pytest.mark.parametrize("env", sorted(GOOD))
def test_override_beats_environment(env: str) -> None:
    attr, raw, expected = GOOD[env]
    environ = {env: BAD.get(env, "from-the-environment")}
    assert getattr(load_settings(environ, {env: raw}), attr) == expected


def test_none_override_falls_back_to_environment() -> None:
    s = load_settings({"K8S_NAMESPACE": "env-ns"}, {"K8S_NAMESPACE": None})
    assert s.namespace == "env-ns"


@pytest.mark.parametrize("env", sorted(BAD))
@pytest.mark.parametrize("via", ["environ", "override"])
def test_bad_value_names_the_variable_in_one_line(env: str, via: str) -> None:
    with pytest.raises(ConfigError) as info:
        if via == "environ":
            load_settings({env: BAD[env]})
        else:
            load_settings({}, {env: BAD[env]})
    assert info.value.variable == env
    assert str(info.value).startswith(f"{env}: ")
    assert "\n" not in str(info.value)
    assert info.value.problem


def test_first_bad_variable_is_reported_even_if_others_are_fine() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({"LISTEN_LOCAL": "127.0.0.1:8090", "WORKSPACE_LB": "sometimes"})
    assert info.value.variable == "WORKSPACE_LB"
    assert "sometimes" in info.value.problem


def test_frontend_origin_follows_listen_address() -> None:
    assert load_settings({"LISTEN_LOCAL": "[::1]:9000"}).frontend_origin == "https://[::1]:9000"
    assert load_settings({"LISTEN_LOCAL": ":9000"}).frontend_origin == "https://127.0.0.1:9000"
    assert origin_of(ListenAddress("::", 1)) == "https://[::1]:1"
    explicit = load_settings({"LISTEN_LOCAL": ":9000", "FRONTEND_ORIGIN": "http://localhost:3000"})
    assert explicit.frontend_origin == "http://localhost:3000"


def test_rethinkdb_namespace_defaults_to_workspace_namespace() -> None:
    assert load_settings({"K8S_NAMESPACE": "ws"}).rethinkdb_namespace == "ws"
    s = load_settings({"K8S_NAMESPACE": "ws", "RETHINKDB_NAMESPACE": "db"})
    assert s.rethinkdb_namespace == "db"


def test_in_cluster_detected_from_service_host() -> None:
    assert load_settings({"KUBERNETES_SERVICE_HOST": "10.0.0.1"}).in_cluster is True


def test_settings_are_immutable() -> None:
    s = load_settings({})
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        s.namespace = "other"  # type: ignore[misc]
    assert isinstance(s, Settings)


def test_paths_expand_home_and_reject_blank() -> None:
    assert parse_path("~/x") == Path.home() / "x"
    with pytest.raises(ValueError):
        parse_path("   ")


# --- property tests -----------------------------------------------------------

ports = st.integers(min_value=1, max_value=65535)


@given(st.ip_addresses(), ports)
@example(ipaddress.ip_address("::ffff:192.0.2.1"), 1)
@example(ipaddress.ip_address("0.0.0.0"), 65535)
def test_parse_listen_round_trips(
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int
) -> None:
    addr = ListenAddress(str(ip), port)
    assert parse_listen(str(addr)) == addr
    assert parse_listen(f"  {addr}\n") == addr


@given(st.ip_addresses(v=6), ports)
def test_parse_listen_normalises_ipv6_spelling(ip: ipaddress.IPv6Address, port: int) -> None:
    assert parse_listen(f"[{ip.exploded.upper()}]:{port}") == ListenAddress(str(ip), port)


def test_parse_listen_special_hosts() -> None:
    assert parse_listen(":8090") == ListenAddress("0.0.0.0", 8090)
    assert parse_listen("localhost:1") == ListenAddress("127.0.0.1", 1)


@pytest.mark.parametrize(
    "text",
    ["nonsense", "127.0.0.1", "::1:8090", "[::1]8090", "[::1", "example.com:80", "127.0.0.1:",
     "127.0.0.1:http", "127.0.0.1:-1", "127.0.0.1:8090x", "1.2.3.4.5:80", "127.0.0.1:٨٠٩٠"],
)  # fmt: skip
def test_parse_listen_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_listen(text)


@given(st.integers().filter(lambda n: not 1 <= n <= 65535))
def test_ports_outside_range_are_rejected(n: int) -> None:
    with pytest.raises(ValueError):
        parse_port(str(n))
    with pytest.raises(ValueError):
        parse_listen(f"127.0.0.1:{n}")
    with pytest.raises(ValueError):
        parse_hostport(f"db:{n}")


@given(ports)
def test_ports_inside_range_are_accepted(n: int) -> None:
    assert parse_port(str(n)) == n
    assert parse_port(f"0{n}") == n


@given(st.text())
@example("²")
@example("١٢٣")
@example("8090\n")
def test_parse_port_agrees_with_ascii_reference(text: str) -> None:
    stripped = text.strip()
    valid = bool(stripped) and all(c in string.digits for c in stripped)
    valid = valid and 1 <= int(stripped) <= 65535
    if valid:
        assert parse_port(text) == int(stripped)
    else:
        with pytest.raises(ValueError):
            parse_port(text)


def _any_case(word: str) -> st.SearchStrategy[str]:
    flips = st.lists(st.booleans(), min_size=len(word), max_size=len(word))
    return flips.map(
        lambda fs: "".join(c.upper() if f else c for c, f in zip(word, fs, strict=True))
    )


@given(
    st.sampled_from(TRUE_WORDS + FALSE_WORDS).flatmap(_any_case),
    st.sampled_from(["", " ", "\t", "\n"]),
)
def test_parse_bool_accepts_documented_words_in_any_case(word: str, pad: str) -> None:
    assert parse_bool(pad + word + pad) is (word.lower() in TRUE_WORDS)


@given(st.text())
@example("truee")
@example("ye s")
@example("\u212a")  # KELVIN SIGN lower-cases to "k": no Unicode trickery
def test_parse_bool_rejects_everything_else(text: str) -> None:
    word = ascii_lower(text.strip())
    if word in TRUE_WORDS or word in FALSE_WORDS:
        assert parse_bool(text) is (word in TRUE_WORDS)
    else:
        with pytest.raises(ValueError):
            parse_bool(text)


hosts = st.one_of(
    st.from_regex(r"\A[a-zA-Z][a-zA-Z0-9]{0,10}(\.[a-zA-Z][a-zA-Z0-9]{0,10}){0,3}\Z"),
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(lambda ip: f"[{ip}]"),
)


@given(
    st.sampled_from(["http", "https", "HTTP", "Https"]),
    hosts,
    st.one_of(st.none(), ports),
    st.sampled_from(["", "/"]),
)
@example("https", "Example.com", 443, "")
@example("http", "[::1]", 80, "/")
@example("http", "127.0.0.1", 443, "")
def test_parse_url_origin_only_normalises(
    scheme: str, host: str, port: int | None, slash: str
) -> None:
    text = f"{scheme}://{host}" + (f":{port}" if port is not None else "") + slash
    scheme_l = scheme.lower()
    default = {"http": 80, "https": 443}[scheme_l]
    expected = f"{scheme_l}://{host.lower()}"
    if port is not None and port != default:
        expected += f":{port}"
    assert parse_url(text, origin_only=True) == expected
    assert parse_origin(text) == expected
    # what a browser sends in Origin is already normalised: idempotent
    assert parse_origin(expected) == expected


@given(
    hosts,
    st.sampled_from(["/app", "/?x=1", "/#frag", "?q", "#f", "/a/b/"]),
)
def test_parse_origin_rejects_paths_queries_fragments(host: str, tail: str) -> None:
    with pytest.raises(ValueError):
        parse_origin(f"https://{host}{tail}")
    if "?" in tail or "#" in tail:
        # a base URL with a query or fragment breaks every path joined to it
        with pytest.raises(ValueError):
            parse_url(f"https://{host}{tail}")
    else:
        assert parse_url(f"https://{host}{tail}") == f"https://{host}{tail}".rstrip("/")


@pytest.mark.parametrize(
    "text",
    ["ftp://x", "x", "//host", "https://", "https://user:pw@host", "https://h:99999",
     "https://[::1", "javascript:alert(1)"],
)  # fmt: skip
def test_parse_url_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_url(text)


def test_parse_url_keeps_path_and_drops_trailing_slash() -> None:
    assert parse_url(" http://127.0.0.1:8001/api/ ") == "http://127.0.0.1:8001/api"


label_text = st.text(alphabet=LABEL_CHARS + "A_.é \n", max_size=70)


@given(st.one_of(label_text, st.text(max_size=70)))
@example("a" * 63)
@example("a" * 64)
@example("a-")
@example("abc\n")
@example("-a")
def test_dns_label_agrees_with_reference(text: str) -> None:
    if is_dns_label(text.strip()):
        assert parse_dns_label(text) == text.strip()
    else:
        with pytest.raises(ValueError):
            parse_dns_label(text)


@given(st.lists(label_text, min_size=1, max_size=5).map(".".join))
@example("a." * 126 + "a")
@example("a." * 127 + "a")
@example("\u212aube.example")  # KELVIN SIGN, which str.lower() turns into "k"
def test_dns_name_agrees_with_reference(text: str) -> None:
    stripped = text.strip()
    normalised = ascii_lower(stripped).rstrip(".")
    if stripped.isascii() and is_dns_name(normalised):
        assert parse_dns_name(text) == normalised
    else:
        with pytest.raises(ValueError):
            parse_dns_name(text)


@given(st.one_of(hosts, label_text), st.one_of(ports, st.integers()))
@example("db\n", 80)
@example("::1", 80)
def test_parse_hostport_agrees_with_reference(host: str, port: int) -> None:
    text = f"{host}:{port}"
    host = host.lstrip()  # the parser strips the whole value
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(bare)
    except ValueError:
        ip = None
    host_ok = (ip is not None and (ip.version == 4) == (bare == host)) or (
        bare == host and is_dns_name(host.lower())
    )
    if host_ok and 1 <= port <= 65535:
        assert parse_hostport(text) == (bare, port)
    else:
        with pytest.raises(ValueError):
            parse_hostport(text)


@given(st.sampled_from(KNOBS), st.text(max_size=40))
def test_any_value_gives_settings_or_a_one_line_config_error(knob: Any, raw: str) -> None:
    """No knob value may crash start-up with anything but ConfigError."""
    try:
        load_settings({knob.env: raw})
    except ConfigError as e:
        assert e.variable == knob.env
        assert "\n" not in str(e)
        assert knob.env not in FREE_TEXT


def test_proxy_preserve_path_takes_host_ports() -> None:
    settings = load_settings({"HOSTAPP_PROXY_PRESERVE_PATH": "127.0.0.1:8888, [::1]:9000"})
    assert settings.proxy_preserve_path == ("127.0.0.1:8888", "[::1]:9000")
    with pytest.raises(ConfigError) as info:
        load_settings({"HOSTAPP_PROXY_PRESERVE_PATH": "10.0.0.0/8"})
    assert "HOSTAPP_PROXY_PRESERVE_PATH" in str(info.value)


# --- workspace lifecycle knobs ----------------------------------------------


def test_storage_and_resource_defaults() -> None:
    s = load_settings({})
    assert s.workspace_storage_size == "10Gi" and s.workspace_storage_class is None
    assert s.workspace_ide_resources == {
        "requests": {"cpu": "250m", "memory": "512Mi"},
        "limits": {"cpu": "2", "memory": "2Gi"},
    }
    assert s.workspace_app_resources["requests"] == {"cpu": "50m", "memory": "64Mi"}
    s = load_settings(
        {
            "WORKSPACE_STORAGE_SIZE": "none",
            "WORKSPACE_STORAGE_CLASS": "local-path",
            "WORKSPACE_APP_RESOURCES": "none",
            "WORKSPACE_IDE_RESOURCES": "requests.memory=1Gi",
        }
    )
    assert s.workspace_storage_size is None and s.workspace_storage_class == "local-path"
    assert s.workspace_app_resources == {}
    assert s.workspace_ide_resources == {"requests": {"memory": "1Gi"}}


@pytest.mark.parametrize(
    ("env", "value", "problem"),
    [
        ("WORKSPACE_STORAGE_SIZE", "0.5Gi", "is not a size"),
        ("WORKSPACE_STORAGE_CLASS", "Bad_Class", "DNS name"),
        ("WORKSPACE_IDE_RESOURCES", "cpu=1", "requests.<resource>"),
        ("WORKSPACE_IDE_RESOURCES", "requests.cpu=2,limits.cpu=1", "greater than the limit"),
        ("WORKSPACE_APP_RESOURCES", "requests.memory=1.5Gi", "whole number"),
    ],
)
def test_bad_lifecycle_knobs_name_the_variable(env: str, value: str, problem: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_settings({env: value})
    assert e.value.variable == env and problem in str(e.value)


# --- workspace origins -----------------------------------------------------------------------


def test_workspace_origin_defaults_to_single() -> None:
    settings = load_settings({})
    assert settings.workspace_origin == "single"
    assert settings.workspace_origin_domain is None


def test_subdomain_mode() -> None:
    settings = load_settings(
        {"WORKSPACE_ORIGIN": "Subdomain", "WORKSPACE_ORIGIN_DOMAIN": "WS.Example.COM."}
    )
    assert settings.workspace_origin == "subdomain"
    assert settings.workspace_origin_domain == "ws.example.com"


@pytest.mark.parametrize(
    ("env", "variable", "words"),
    [
        ({"WORKSPACE_ORIGIN": "per-workspace"}, "WORKSPACE_ORIGIN", "neither"),
        ({"WORKSPACE_ORIGIN": "subdomain"}, "WORKSPACE_ORIGIN_DOMAIN", "required"),
        (
            {"WORKSPACE_ORIGIN": "subdomain", "WORKSPACE_ORIGIN_DOMAIN": "127.0.0.1"},
            "WORKSPACE_ORIGIN_DOMAIN",
            "address",
        ),
        (
            {"WORKSPACE_ORIGIN": "subdomain", "WORKSPACE_ORIGIN_DOMAIN": "a_b"},
            "WORKSPACE_ORIGIN_DOMAIN",
            "not a DNS name",
        ),
        (
            {
                "WORKSPACE_ORIGIN": "subdomain",
                "WORKSPACE_ORIGIN_DOMAIN": "example.com",
                "FRONTEND_ORIGIN": "https://guildnet.example.com",
            },
            "WORKSPACE_ORIGIN_DOMAIN",
            "own host",
        ),
    ],
)
def test_bad_workspace_origin_settings_name_the_variable(
    env: dict[str, str], variable: str, words: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    assert info.value.variable == variable
    assert words in str(info.value)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("0", 0), ("1800", 1800), ("90s", 90), ("30m", 1800), ("1h30m", 5400), ("2d", 172800),
     (" 1H ", 3600), ("1.5h", 5400), ("30d", 2592000)],
)  # fmt: skip
def test_idle_timeout_takes_seconds_or_durations(text: str, seconds: float) -> None:
    from guildnet.config import parse_duration

    assert parse_duration(text) == seconds
    settings = load_settings({"WORKSPACE_IDLE_TIMEOUT": text})
    assert settings.workspace_idle_timeout == seconds


@pytest.mark.parametrize("text", ["-1", "31d", "30x", "m30", "1h 30m", "h", "1hh", "nan"])
def test_bad_idle_timeout_names_the_variable(text: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_settings({"WORKSPACE_IDLE_TIMEOUT": text})
    assert e.value.variable == "WORKSPACE_IDLE_TIMEOUT"
