"""Secrets never leave the process: URLs shown without their credentials, texts scrubbed of known secrets.

    shown = redact_url("rtsp://alice:pw@cam/stream?token=abc&ch=1")   # 'rtsp://***@cam/stream?token=***&ch=1'
    secrets = url_secrets("rtsp://alice:pw@cam/stream?token=abc")     # ('pw', 'abc', ...) as written and decoded
    line = scrub(ffmpeg_error_text, secrets)                          # every secret and any URL's userinfo: ***

A URL's credentials are its userinfo (`user:password@`, the whole of it: a user name names an account) and the
values of query parameters whose names look like credentials (SECRET_PARAM: token, password, key, auth, sig, …).
The places that read a secret (a camera's source, `model.base_url`, `model.api_key`, MQTT's password) redact it
once, where they parse it, and keep the secret strings beside the redacted text so that error texts from libraries
(FFmpeg's messages repeat the URL they were given) can be scrubbed before they become a reason, a log line, an event.
Pure and dependency-free (the ground floor: anything may import it).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, unquote, unquote_plus, urlsplit, urlunsplit

MASK = "***"
# query parameter names that carry credentials (matched anywhere in the name, case-insensitive): token, access_token,
# password, passwd, pwd, key, apikey, api_key, auth, authorization, sig, signature, secret, credential(s), session id
SECRET_PARAM = re.compile(r"token|pass|pwd|key|auth|sig|secret|cred|session|sid|jwt", re.IGNORECASE)
# a URL anywhere in a text: scheme://[userinfo@]rest
_URL_IN_TEXT = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]{1,15}://)(?P<rest>[^\s'\"<>]+)")
MIN_SECRET_LEN = 3  # shorter "secrets" (a one-letter password) are not scrubbed from free text: they would shred it


def redact_url(url: str) -> str:
    """The URL as it may be shown: userinfo replaced by *** and credential-like query values by ***. Not a URL (a file
    path, a device, a lavfi graph): returned unchanged."""
    if "://" not in url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an invalid IPv6 literal: show only the scheme
        return url.split("://", 1)[0] + "://" + MASK
    netloc = parts.netloc
    if "@" in netloc:
        netloc = MASK + "@" + netloc.rsplit("@", 1)[1]
    query = _redact_query(parts.query)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _redact_query(query: str) -> str:
    if not query:
        return query
    out = []
    for field in query.split("&"):
        name, eq, value = field.partition("=")
        if eq and value and SECRET_PARAM.search(unquote_plus(name)):
            value = MASK
        out.append(f"{name}{eq}{value}")
    return "&".join(out)


def url_secrets(url: str) -> tuple[str, ...]:
    """The secret strings a URL holds (userinfo, its password alone, credential-like query values), as written and
    percent-decoded, longest first: what scrub() removes from texts that may repeat them."""
    if "://" not in url:
        return ()
    try:
        parts = urlsplit(url)
    except ValueError:
        return (url,)  # cannot tell: the whole URL is the secret
    found: set[str] = set()
    if "@" in parts.netloc:
        userinfo = parts.netloc.rsplit("@", 1)[0]
        found.add(userinfo)
        _, colon, password = userinfo.partition(":")
        if colon and password:
            found.add(password)
    for name, value in parse_qsl(parts.query, keep_blank_values=False):
        if SECRET_PARAM.search(name):
            found.add(value)
    for raw_field in parts.query.split("&"):
        name, eq, value = raw_field.partition("=")
        if eq and value and SECRET_PARAM.search(unquote_plus(name)):
            found.add(value)  # as written (percent-encoded), too
    found |= {unquote(s) for s in found}
    return tuple(sorted((s for s in found if len(s) >= MIN_SECRET_LEN), key=len, reverse=True))


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with each of `secrets` replaced by *** and every URL in it redacted (redact_url): for error texts of
    libraries and for anything else that may repeat a secret it was given."""
    for s in sorted({s for s in secrets if s and len(s) >= MIN_SECRET_LEN}, key=len, reverse=True):
        text = text.replace(s, MASK)
    if "://" in text:
        text = _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)
    return text
