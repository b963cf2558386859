"""SIP trace masking (issue 13 item 8): a pure function, so every case is a plain check."""

from __future__ import annotations

from gateway.sip.trace import MASK, mask_header, mask_message, trace_fields

DIGEST = ('Digest username="alice", realm="pbx.example", nonce="4f2a9c", uri="sip:pbx.example",'
          ' response="0123456789abcdef0123456789abcdef", algorithm=MD5, cnonce="c0ffee",'
          ' qop=auth, nc=00000001, opaque="5ccc069c"')


def test_digest_credentials_keep_who_and_where_but_not_the_response() -> None:
    masked = mask_header("Authorization", " " + DIGEST)
    assert "0123456789abcdef" not in masked and "c0ffee" not in masked
    assert "4f2a9c" not in masked and "5ccc069c" not in masked
    for kept in ('username="alice"', 'realm="pbx.example"', 'uri="sip:pbx.example"',
                 "algorithm=MD5", "qop=auth", "nc=00000001"):
        assert kept in masked
    assert f'response="{MASK}"' in masked and masked.startswith(" Digest ")


def test_header_names_and_schemes_are_case_insensitive() -> None:
    assert "0123456789abcdef" not in mask_header("proxy-AUTHORIZATION", DIGEST.replace(
        "Digest", "DIGEST").replace("response=", "Response="))
    assert mask_header("authorization", " bearer s3cr3t-token") == f" bearer {MASK}"
    assert mask_header("Authorization", " Basic YWxpY2U6c2VjcmV0") == f" Basic {MASK}"


def test_unquoted_digest_response_is_masked() -> None:
    assert mask_header("Authorization", "Digest username=alice, response=abcdef12") == \
        f"Digest username=alice, response={MASK}"


def test_challenges_and_authentication_info() -> None:
    challenge = mask_header("WWW-Authenticate",
                            ' Digest realm="pbx", nonce="abc123", opaque="xyz", qop="auth"')
    assert challenge == f' Digest realm="pbx", nonce="{MASK}", opaque="{MASK}", qop="auth"'
    info = mask_header("Authentication-Info", ' rspauth="feed", cnonce="c", nc=00000001')
    assert info == f' rspauth="{MASK}", cnonce="{MASK}", nc=00000001'


def test_other_headers_are_untouched() -> None:
    value = ' <sip:alice@x>;tag=response="1"'
    assert mask_header("From", value) == value


def test_a_whole_message_folded_header_and_sdp_crypto_key() -> None:
    raw = (b"REGISTER sip:pbx.example SIP/2.0\r\n"
           b"Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1\r\n"
           b'Authorization: Digest username="alice", realm="pbx.example",\r\n'
           b' response="deadbeefdeadbeef"\r\n'
           b"Content-Length: 0\r\n\r\n"
           b"v=0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 "
           b"inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^20\r\n"
           )
    text = mask_message(raw)
    assert "deadbeef" not in text and "WVNfX19zZW1j" not in text
    assert text.startswith("REGISTER sip:pbx.example SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060")
    assert f"inline:{MASK}|2^20" in text and 'username="alice"' in text


def test_invalid_utf8_never_raises() -> None:
    text = mask_message(b"OPTIONS sip:x SIP/2.0\r\nFrom: \xff\xfe\r\n\r\n")
    assert text.startswith("OPTIONS sip:x SIP/2.0")


def test_trace_fields_name_direction_addresses_and_transport() -> None:
    fields = trace_fields("out", b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n",
                          ("127.0.0.1", 5060), ("::1", 40000), "tcp")
    assert fields == {"direction": "out", "transport": "tcp", "local": "127.0.0.1:5060",
                      "remote": "[::1]:40000", "bytes": 37, "first_line": "SIP/2.0 200 OK",
                      "message": "SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n"}
