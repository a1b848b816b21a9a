"""Sealed tokens and the revocation list: how any gateway checks a token with no database.

A token is its own record: the identity service seals `TokenData` with AES-256-GCM under a key
it keeps in its schema and hands to gateways over the bus. A gateway opens the token (a few
microseconds), checks the expiry and asks its in-memory revocation list, which the identity
service keeps current by event. Forging or altering a token fails authentication of the seal.

Wire form: base64url( version(1) | key id(4) | nonce(12) | ciphertext+tag ), the plaintext a
compact JSON array of TokenData's fields. Several keys may be live at once (rotation): the first
seals, all open.
"""

import base64
import hashlib
import os
import time
from collections.abc import Iterable, Sequence

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from protocol.errors import Unauthorized
from protocol.identity import Revocation, RoleRef, TokenData

VERSION = b"\x01"
#: How many opened tokens a sealer remembers (about 1 KiB each).
OPENED_CACHE_SIZE = 8192


def new_key() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


def _key_id(key: bytes) -> bytes:
    return hashlib.sha256(key).digest()[:4]


class TokenSealer:
    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise ValueError("at least one token key is needed")
        raw = [base64.urlsafe_b64decode(k) for k in keys]
        self._primary = _key_id(raw[0])
        self._ciphers = {_key_id(k): AESGCM(k) for k in raw}
        # Tokens already opened under these keys: a client presents the same token many times,
        # and opening one costs tens of microseconds. Only seals that held are kept; expiry and
        # revocation are still checked on every use by `check`. A new sealer (key rotation)
        # starts empty. Oldest entries go first when full.
        self._opened: dict[str, TokenData] = {}

    def seal(self, data: TokenData) -> str:
        plain = orjson.dumps(
            [
                data.user_id,
                data.user_name,
                data.user_domain_id,
                data.user_domain_name,
                data.project_id,
                data.project_name,
                data.project_domain_id,
                data.project_domain_name,
                data.domain_id,
                data.domain_name,
                [[r.id, r.name] for r in data.roles],
                data.methods,
                data.issued_at,
                data.expires_at,
                data.audit_id,
            ]
        )
        nonce = os.urandom(12)
        head = VERSION + self._primary
        sealed = self._ciphers[self._primary].encrypt(nonce, plain, head)
        return base64.urlsafe_b64encode(head + nonce + sealed).decode().rstrip("=")

    def open(self, token: str) -> TokenData:
        """The token's data, if the seal holds; Unauthorized otherwise (expiry not checked)."""
        data = self._opened.get(token)
        if data is None:
            data = self._open(token)
            if len(self._opened) >= OPENED_CACHE_SIZE:
                del self._opened[next(iter(self._opened))]
            self._opened[token] = data
        return data

    def _open(self, token: str) -> TokenData:
        try:
            blob = base64.b64decode(token + "=" * (-len(token) % 4), altchars=b"-_", validate=True)
        except (ValueError, TypeError):
            raise Unauthorized("The token is malformed.") from None
        # One spelling per token: no stray characters, no spare bits set in the last one.
        if base64.urlsafe_b64encode(blob).decode().rstrip("=") != token:
            raise Unauthorized("The token is malformed.")
        head, nonce, sealed = blob[:5], blob[5:17], blob[17:]
        cipher = self._ciphers.get(head[1:5]) if head[:1] == VERSION else None
        if cipher is None or len(nonce) != 12:
            raise Unauthorized("The token is not valid.")
        try:
            f = orjson.loads(cipher.decrypt(nonce, sealed, head))
        except InvalidTag:
            raise Unauthorized("The token is not valid.") from None
        return TokenData(
            user_id=f[0],
            user_name=f[1],
            user_domain_id=f[2],
            user_domain_name=f[3],
            project_id=f[4],
            project_name=f[5],
            project_domain_id=f[6],
            project_domain_name=f[7],
            domain_id=f[8],
            domain_name=f[9],
            roles=tuple(RoleRef(id=i, name=n) for i, n in f[10]),
            methods=tuple(f[11]),
            issued_at=f[12],
            expires_at=f[13],
            audit_id=f[14],
        )


def matches(rule: Revocation, data: TokenData) -> bool:
    if data.issued_at > rule.issued_before:
        return False
    if rule.audit_id is not None and rule.audit_id != data.audit_id:
        return False
    if rule.user_id is not None and rule.user_id != data.user_id:
        return False
    if rule.project_id is not None and rule.project_id != data.project_id:
        return False
    if rule.domain_id is not None and rule.domain_id not in (
        data.user_domain_id,
        data.project_domain_id,
        data.domain_id,
    ):
        return False
    return rule.role_id is None or any(r.id == rule.role_id for r in data.roles)


class RevocationList:
    """Revocation rules indexed by the first field each one names, so that checking a token
    looks at only the few rules that could concern it."""

    def __init__(self) -> None:
        self._index: dict[tuple[str, str], set[Revocation]] = {}

    def __len__(self) -> int:
        return sum(len(rules) for rules in self._index.values())

    @staticmethod
    def _key(rule: Revocation) -> tuple[str, str]:
        for field in ("audit_id", "user_id", "project_id", "domain_id", "role_id"):
            value = getattr(rule, field)
            if value is not None:
                return field, value
        raise ValueError("a revocation must name at least one of its fields")

    def add(self, rule: Revocation) -> None:
        """Idempotent: a rule seen twice (from the event and from a reload) is kept once."""
        self._index.setdefault(self._key(rule), set()).add(rule)

    def add_all(self, rules: Iterable[Revocation]) -> None:
        for rule in rules:
            self.add(rule)

    def prune(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        self._index = {
            key: kept
            for key, rules in self._index.items()
            if (kept := {r for r in rules if r.expires_at > now})
        }

    def is_revoked(self, data: TokenData) -> bool:
        keys = [("audit_id", data.audit_id), ("user_id", data.user_id)]
        if data.project_id:
            keys.append(("project_id", data.project_id))
        for domain in {data.user_domain_id, data.project_domain_id, data.domain_id}:
            if domain:
                keys.append(("domain_id", domain))
        keys.extend(("role_id", r.id) for r in data.roles)
        index = self._index
        for key in keys:
            for rule in index.get(key, ()):
                if matches(rule, data):
                    return True
        return False


def check(sealer: TokenSealer, revocations: RevocationList, token: str) -> TokenData:
    """Open a token and refuse it if expired or revoked."""
    data = sealer.open(token)
    if data.expires_at <= time.time():
        raise Unauthorized("The token has expired.")
    if revocations.is_revoked(data):
        raise Unauthorized("The token has been revoked.")
    return data
