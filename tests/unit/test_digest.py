"""Tests for gateway.sip.digest against RFC vectors and an independent hashlib computation."""

from __future__ import annotations

import hashlib

import pytest

from gateway.sip.digest import (
    Challenge,
    DigestError,
    authorization,
    choose_challenge,
    expected_response,
    parse_challenge,
    parse_credentials,
    verify,
)

# RFC 2617 section 3.5
RFC2617_CHALLENGE = (
    'Digest realm="testrealm@host.com", qop="auth,auth-int", '
    'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"'
)
RFC2617_RESPONSE = "6629fae49393a05397450978507c4ef1"

# RFC 7616 section 3.9.1
RFC7616_NONCE = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"
RFC7616_OPAQUE = "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"
RFC7616_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"
RFC7616_MD5 = "8ca523f5e9506fed4657c9700eebdbec"
RFC7616_SHA256 = "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"


def rfc7616_challenge(algorithm: str) -> str:
    return (
        f'Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm={algorithm}, '
        f'nonce="{RFC7616_NONCE}", opaque="{RFC7616_OPAQUE}"'
    )


def independent(
    algorithm: str,
    *,
    method: str,
    uri: str,
    user: str,
    password: str,
    realm: str,
    nonce: str,
    nc: str | None,
    cnonce: str | None,
    qop: str | None,
    body: bytes = b"",
) -> str:
    """Straight-line RFC 7616 section 3.4.1 computation, written separately from the module."""
    name = "sha256" if algorithm.startswith("SHA-256") else "md5"

    def h(text: str | bytes) -> str:
        data = text.encode() if isinstance(text, str) else text
        return hashlib.new(name, data).hexdigest()

    a1 = f"{user}:{realm}:{password}"
    ha1 = h(a1)
    if algorithm.endswith("-sess"):
        ha1 = h(f"{ha1}:{nonce}:{cnonce}")
    a2 = f"{method}:{uri}" + (f":{h(body)}" if qop == "auth-int" else "")
    if qop is None:
        return h(f"{ha1}:{nonce}:{h(a2)}")
    return h(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{h(a2)}")


def test_rfc2617_example() -> None:
    ch = parse_challenge(RFC2617_CHALLENGE)
    value = authorization(
        ch, method="GET", uri="/dir/index.html", username="Mufasa",
        password="Circle Of Life", nc=1, cnonce="0a4f113b",
    )  # fmt: skip
    creds = parse_credentials(value)
    assert creds["response"] == RFC2617_RESPONSE
    assert creds["qop"] == "auth" and creds["nc"] == "00000001" and creds["cnonce"] == "0a4f113b"
    assert creds["opaque"] == "5ccc069c403ebaf9f0171e9517f40e41"
    assert creds["username"] == "Mufasa" and creds["uri"] == "/dir/index.html"
    assert value.startswith('Digest username="Mufasa", realm="testrealm@host.com", ')
    assert "qop=auth, nc=00000001, " in value  # qop and nc unquoted (RFC 7616 3.4)


@pytest.mark.parametrize(("algorithm", "expected"), [("MD5", RFC7616_MD5),
                                                     ("SHA-256", RFC7616_SHA256)])  # fmt: skip
def test_rfc7616_examples(algorithm: str, expected: str) -> None:
    ch = parse_challenge(rfc7616_challenge(algorithm))
    assert ch.algorithm == algorithm and ch.qop == ("auth", "auth-int")
    value = authorization(
        ch, method="GET", uri="/dir/index.html", username="Mufasa",
        password="Circle of Life", nc=1, cnonce=RFC7616_CNONCE,
    )  # fmt: skip
    creds = parse_credentials(value)
    assert creds["response"] == expected
    assert creds["algorithm"] == algorithm and creds["opaque"] == RFC7616_OPAQUE


@pytest.mark.parametrize("algorithm", ["MD5", "MD5-sess", "SHA-256", "SHA-256-sess"])
@pytest.mark.parametrize("qop", [None, "auth", "auth-int"])
def test_cross_check_with_independent_computation(algorithm: str, qop: str | None) -> None:
    ch = Challenge("Digest", "sip.example.com", "abc123nonce", algorithm, (), None, False)
    body = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\n"
    got = expected_response(
        ch, method="INVITE", uri="sip:bob@example.com", username="alice", password="s3cr\u00e9t",
        nc=0x1F, cnonce="cn0nce", qop=qop, body=body,
    )  # fmt: skip
    want = independent(
        algorithm, method="INVITE", uri="sip:bob@example.com", user="alice",
        password="s3cr\u00e9t", realm="sip.example.com", nonce="abc123nonce",
        nc="0000001f", cnonce="cn0nce", qop=qop, body=body,
    )  # fmt: skip
    assert got == want


def test_auth_int_used_only_when_auth_not_offered() -> None:
    ch = parse_challenge('Digest realm="r", nonce="n", qop="auth-int"')

    def answer(body: bytes) -> dict[str, str]:
        value = authorization(
            ch, method="REGISTER", uri="sip:r", username="u", password="p",
            nc=2, cnonce="c", body=body,
        )  # fmt: skip
        return parse_credentials(value)

    creds = answer(b"hello")
    assert creds["qop"] == "auth-int" and creds["nc"] == "00000002"
    assert creds["response"] == independent(
        "MD5", method="REGISTER", uri="sip:r", user="u", password="p", realm="r", nonce="n",
        nc="00000002", cnonce="c", qop="auth-int", body=b"hello",
    )  # fmt: skip
    assert answer(b"HELLO")["response"] != creds["response"]


def test_rfc2069_form_without_qop() -> None:
    ch = parse_challenge('Digest realm="biloxi.com", nonce="xyz"')
    value = authorization(
        ch, method="REGISTER", uri="sip:biloxi.com", username="bob", password="zanzibar",
        nc=1, cnonce="unused",
    )  # fmt: skip
    creds = parse_credentials(value)
    assert "qop" not in creds and "nc" not in creds and "cnonce" not in creds
    assert "opaque" not in creds
    assert creds["response"] == independent(
        "MD5", method="REGISTER", uri="sip:biloxi.com", user="bob", password="zanzibar",
        realm="biloxi.com", nonce="xyz", nc=None, cnonce=None, qop=None,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            'Digest   realm = "atlanta.com" ,nonce="84a4cc6f3082121f32b42a2187831a9e",'
            "   algorithm=MD5,qop=\"auth,auth-int\"",
            Challenge("Digest", "atlanta.com", "84a4cc6f3082121f32b42a2187831a9e", "MD5",
                      ("auth", "auth-int"), None, False),
        ),
        (
            'digest nonce=abc, stale=TRUE, opaque="", realm="a \\"quoted\\" \\\\ realm"',
            Challenge("Digest", 'a "quoted" \\ realm', "abc", "MD5", (), "", True),
        ),
        (
            'Digest algorithm=sha-256, qop=auth, realm="r,with,commas", nonce="n", stale=false',
            Challenge("Digest", "r,with,commas", "n", "SHA-256", ("auth",), None, False),
        ),
        (
            'Digest realm="r", nonce="n", algorithm="MD5-sess", domain="sip:a sip:b", x=y',
            Challenge("Digest", "r", "n", "MD5-sess", (), None, False),
        ),
    ],
)  # fmt: skip
def test_parse_odd_but_valid_challenges(value: str, expected: Challenge) -> None:
    assert parse_challenge(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        'Basic realm="x"',
        'Digest realm="r"',
        'Digest nonce="n"',
        'Digest realm="r", nonce="n", algorithm=SHA-512-256',
        'Digest realm="r", nonce="n", algorithm=AKAv1-MD5',
        'Digest realm="unterminated, nonce="n"',
        'Digest realm="r", realm="s", nonce="n"',
        'Digest realm="r" junk, nonce="n"',
        "Digest realm",
        "",
    ],
)
def test_bad_challenges(value: str) -> None:
    with pytest.raises(DigestError):
        parse_challenge(value)


def test_choose_challenge_prefers_sha256_and_skips_unusable() -> None:
    md5 = 'Digest realm="r", nonce="n1", qop="auth"'
    sha = 'Digest realm="r", nonce="n2", qop="auth", algorithm=SHA-256'
    odd = 'Digest realm="r", nonce="n3", algorithm=SHA-512-256'
    conf = 'Digest realm="r", nonce="n4", qop="auth-conf", algorithm=SHA-256'
    assert choose_challenge([md5, sha]).nonce == "n2"
    assert choose_challenge([sha, md5]).nonce == "n2"
    assert choose_challenge(['Basic realm="x"', odd, conf, md5]).nonce == "n1"
    with pytest.raises(DigestError):
        choose_challenge([odd, 'Basic realm="x"', conf])
    with pytest.raises(DigestError):
        choose_challenge([])


def test_credentials_round_trip_with_awkward_username() -> None:
    ch = parse_challenge('Digest realm="r", nonce="n", qop="auth", opaque="o\\"p"')
    assert ch.opaque == 'o"p'
    value = authorization(
        ch, method="INVITE", uri="sip:x@y", username='we"ird\\user', password="pw",
        nc=255, cnonce="c",
    )  # fmt: skip
    creds = parse_credentials(value)
    assert creds["username"] == 'we"ird\\user' and creds["opaque"] == 'o"p'
    assert creds["nc"] == "000000ff"
    assert verify(ch, creds, method="INVITE", password="pw")


def test_verify_rejects_wrong_inputs() -> None:
    ch = parse_challenge(rfc7616_challenge("SHA-256"))
    value = authorization(
        ch, method="GET", uri="/dir/index.html", username="Mufasa",
        password="Circle of Life", nc=1, cnonce=RFC7616_CNONCE,
    )  # fmt: skip
    creds = parse_credentials(value)
    assert verify(ch, creds, method="GET", password="Circle of Life")
    assert not verify(ch, creds, method="GET", password="circle of life")
    assert not verify(ch, creds, method="POST", password="Circle of Life")
    assert not verify(ch, {**creds, "uri": "/other"}, method="GET", password="Circle of Life")
    assert not verify(ch, {**creds, "nonce": "old"}, method="GET", password="Circle of Life")
    assert not verify(ch, {**creds, "algorithm": "MD5"}, method="GET", password="Circle of Life")
    missing = {k: v for k, v in creds.items() if k != "uri"}
    assert not verify(ch, missing, method="GET", password="Circle of Life")


def test_errors_for_unanswerable_inputs() -> None:
    ch = parse_challenge('Digest realm="r", nonce="n", qop="auth-conf"')
    with pytest.raises(DigestError):
        authorization(ch, method="M", uri="u", username="a", password="b", nc=1, cnonce="c")
    ok = parse_challenge('Digest realm="r", nonce="n", qop="auth"')
    with pytest.raises(DigestError):
        authorization(ok, method="M", uri="u", username="a", password="b", nc=0, cnonce="c")
    with pytest.raises(DigestError):
        expected_response(ok, method="M", uri="u", username="a", password="b",
                          nc=None, cnonce=None, qop="auth")  # fmt: skip
    sess = parse_challenge('Digest realm="r", nonce="n", algorithm=MD5-sess')
    with pytest.raises(DigestError):
        expected_response(sess, method="M", uri="u", username="a", password="b",
                          nc=None, cnonce=None, qop=None)  # fmt: skip
    with pytest.raises(DigestError):
        parse_credentials("Basic dXNlcjpwYXNz")
