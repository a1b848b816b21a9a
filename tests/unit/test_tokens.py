"""Sealed tokens and the revocation list (`fabric.tokens`), with no database and no bus."""

import base64
import dataclasses
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fabric.tokens import VERSION, RevocationList, TokenSealer, check, matches, new_key
from protocol.errors import Unauthorized
from protocol.identity import Revocation, RoleRef, TokenData

NOW = 1_700_000_000.0


def token_data(**overrides: object) -> TokenData:
    data = TokenData(
        user_id="u-1",
        user_name="alice",
        user_domain_id="d-user",
        user_domain_name="Users",
        project_id="p-1",
        project_name="web",
        project_domain_id="d-project",
        project_domain_name="Projects",
        domain_id=None,
        domain_name=None,
        roles=(RoleRef(id="r-member", name="member"), RoleRef(id="r-reader", name="reader")),
        methods=("password",),
        issued_at=NOW,
        expires_at=NOW + 3600,
        audit_id="audit-1",
    )
    return dataclasses.replace(data, **overrides)  # type: ignore[arg-type]


def rule(**fields: object) -> Revocation:
    fields.setdefault("issued_before", NOW)
    fields.setdefault("expires_at", NOW + 3600)
    return Revocation(**fields)  # type: ignore[arg-type]


def blob_of(token: str) -> bytes:
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


def token_of(blob: bytes) -> str:
    return base64.urlsafe_b64encode(blob).decode().rstrip("=")


# --- sealing -------------------------------------------------------------------------------

ids = st.text(max_size=20)
optional_ids = st.none() | ids
token_datas = st.builds(
    TokenData,
    user_id=ids,
    user_name=ids,
    user_domain_id=ids,
    user_domain_name=ids,
    project_id=optional_ids,
    project_name=optional_ids,
    project_domain_id=optional_ids,
    project_domain_name=optional_ids,
    domain_id=optional_ids,
    domain_name=optional_ids,
    roles=st.lists(st.builds(RoleRef, id=ids, name=ids), max_size=4).map(tuple),
    methods=st.lists(st.sampled_from(["password", "token"]), max_size=2).map(tuple),
    issued_at=st.floats(0, 4e9),
    expires_at=st.floats(0, 4e9),
    audit_id=ids,
)
SEALER = TokenSealer([new_key()])


@given(data=token_datas)
@settings(max_examples=100, deadline=None)
def test_open_gives_back_what_was_sealed(data: TokenData) -> None:
    assert SEALER.open(SEALER.seal(data)) == data


def test_each_seal_is_fresh_and_url_safe() -> None:
    data = token_data()
    first, second = SEALER.seal(data), SEALER.seal(data)
    assert first != second  # a new nonce every time
    for token in (first, second):
        assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
        assert blob_of(token)[:1] == VERSION


@given(data=st.data())
@settings(max_examples=100, deadline=None)
def test_any_changed_bit_is_refused(data: st.DataObject) -> None:
    blob = bytearray(blob_of(SEALER.seal(token_data())))
    i = data.draw(st.integers(0, len(blob) - 1), label="byte")
    blob[i] ^= 1 << data.draw(st.integers(0, 7), label="bit")
    with pytest.raises(Unauthorized):
        SEALER.open(token_of(bytes(blob)))


def test_a_cut_or_lengthened_token_is_refused() -> None:
    blob = blob_of(SEALER.seal(token_data()))
    for changed in (blob[:-1], blob[:17], blob[:5], blob[:1], b"", blob + b"\x00"):
        with pytest.raises(Unauthorized):
            SEALER.open(token_of(changed))


@pytest.mark.parametrize("token", ["", "=", "not a token", "é", "a" * 3, "\x00", "A" * 400])
def test_garbage_is_refused(token: str) -> None:
    with pytest.raises(Unauthorized):
        SEALER.open(token)


def test_a_token_of_another_version_is_refused() -> None:
    blob = blob_of(SEALER.seal(token_data()))
    with pytest.raises(Unauthorized):
        SEALER.open(token_of(b"\x02" + blob[1:]))


def test_a_token_sealed_with_an_unknown_key_is_refused() -> None:
    token = TokenSealer([new_key()]).seal(token_data())
    with pytest.raises(Unauthorized, match="not valid"):
        SEALER.open(token)


def test_a_forged_key_id_does_not_help() -> None:
    """Another key's token relabelled with our key id fails the seal, not just the lookup."""
    ours = blob_of(SEALER.seal(token_data()))
    theirs = blob_of(TokenSealer([new_key()]).seal(token_data(user_id="admin")))
    with pytest.raises(Unauthorized):
        SEALER.open(token_of(ours[:5] + theirs[5:]))


def test_key_rotation_seals_with_the_first_key_and_opens_with_any() -> None:
    old, new = new_key(), new_key()
    before = TokenSealer([old])
    during = TokenSealer([new, old])
    after = TokenSealer([new])
    old_token, new_token = before.seal(token_data()), during.seal(token_data(user_id="u-2"))
    assert during.open(old_token) == token_data()
    assert during.open(new_token).user_id == "u-2"
    assert after.open(new_token).user_id == "u-2"  # sealed with the new key, the first one
    with pytest.raises(Unauthorized):
        before.open(new_token)
    with pytest.raises(Unauthorized):
        after.open(old_token)  # the old key retired: its tokens are gone with it


def test_a_sealer_needs_a_key() -> None:
    with pytest.raises(ValueError):
        TokenSealer([])


# --- check: seal, expiry, revocation -------------------------------------------------------


def test_check_accepts_a_live_token() -> None:
    data = token_data(issued_at=time.time() - 1, expires_at=time.time() + 60)
    assert check(SEALER, RevocationList(), SEALER.seal(data)) == data


def test_check_refuses_an_expired_token() -> None:
    for expires_at in (time.time() - 1, time.time() - 3600):
        token = SEALER.seal(token_data(issued_at=expires_at - 60, expires_at=expires_at))
        with pytest.raises(Unauthorized, match="expired"):
            check(SEALER, RevocationList(), token)


def test_check_refuses_a_revoked_token() -> None:
    data = token_data(issued_at=time.time() - 10, expires_at=time.time() + 60)
    revocations = RevocationList()
    revocations.add(rule(user_id=data.user_id, issued_before=time.time(), expires_at=data.expires_at))
    with pytest.raises(Unauthorized, match="revoked"):
        check(SEALER, revocations, SEALER.seal(data))


def test_a_token_checked_before_is_still_refused_once_revoked_or_expired() -> None:
    """The sealer remembers opened tokens; that must never skip the revocation or expiry check."""
    sealer = TokenSealer([new_key()])
    data = token_data(issued_at=time.time() - 10, expires_at=time.time() + 0.2)
    token = sealer.seal(data)
    revocations = RevocationList()
    assert check(sealer, revocations, token) == data
    assert check(sealer, revocations, token) == data  # from the sealer's memory now
    revocations.add(rule(audit_id=data.audit_id, issued_before=time.time(), expires_at=data.expires_at))
    with pytest.raises(Unauthorized, match="revoked"):
        check(sealer, revocations, token)
    time.sleep(0.25)
    with pytest.raises(Unauthorized, match="expired"):
        check(sealer, RevocationList(), token)


def test_the_memory_of_opened_tokens_is_bounded_and_keeps_no_failures(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("fabric.tokens.OPENED_CACHE_SIZE", 3)
    sealer = TokenSealer([new_key()])
    tokens = [sealer.seal(token_data(audit_id=f"audit-{i}")) for i in range(5)]
    for token in tokens:
        sealer.open(token)
    assert list(sealer._opened) == tokens[-3:]
    with pytest.raises(Unauthorized):
        sealer.open(TokenSealer([new_key()]).seal(token_data()))
    assert len(sealer._opened) == 3


def test_check_refuses_a_forged_token_before_anything_else() -> None:
    with pytest.raises(Unauthorized, match="not valid"):
        check(SEALER, RevocationList(), TokenSealer([new_key()]).seal(token_data()))


# --- the revocation list -------------------------------------------------------------------


def test_add_and_add_all_are_idempotent() -> None:
    revocations = RevocationList()
    one, two = rule(user_id="u-1"), rule(project_id="p-1")
    revocations.add(one)
    revocations.add(one)
    revocations.add(rule(user_id="u-1"))  # an equal rule, from the reload after the event
    assert len(revocations) == 1
    revocations.add_all([one, two, two, rule(project_id="p-1")])
    assert len(revocations) == 2


def test_a_rule_must_name_something() -> None:
    with pytest.raises(ValueError):
        RevocationList().add(rule())


@pytest.mark.parametrize(
    ("fields", "revoked"),
    [
        ({"audit_id": "audit-1"}, True),
        ({"audit_id": "audit-2"}, False),
        ({"user_id": "u-1"}, True),
        ({"user_id": "u-2"}, False),
        ({"project_id": "p-1"}, True),
        ({"project_id": "p-2"}, False),
        ({"role_id": "r-reader"}, True),
        ({"role_id": "r-admin"}, False),
        # A domain matches the user's domain, the project's domain or a domain scope.
        ({"domain_id": "d-user"}, True),
        ({"domain_id": "d-project"}, True),
        ({"domain_id": "d-other"}, False),
        # Every field a rule names must match.
        ({"user_id": "u-1", "project_id": "p-1"}, True),
        ({"user_id": "u-1", "project_id": "p-2"}, False),
        ({"user_id": "u-2", "project_id": "p-1"}, False),
        ({"project_id": "p-1", "role_id": "r-member"}, True),
        ({"project_id": "p-1", "role_id": "r-admin"}, False),
        ({"domain_id": "d-project", "role_id": "r-admin"}, False),
    ],
)
def test_is_revoked_by_each_field(fields: dict[str, str], revoked: bool) -> None:
    revocations = RevocationList()
    revocations.add(rule(**fields))
    assert revocations.is_revoked(token_data()) is revoked


def test_a_domain_rule_matches_a_domain_scoped_token() -> None:
    data = token_data(project_id=None, project_name=None, project_domain_id=None, domain_id="d-scope")
    revocations = RevocationList()
    revocations.add(rule(domain_id="d-scope"))
    assert revocations.is_revoked(data)
    assert not revocations.is_revoked(token_data())


def test_a_project_rule_does_not_match_an_unscoped_token() -> None:
    revocations = RevocationList()
    revocations.add(rule(project_id="p-1"))
    assert not revocations.is_revoked(token_data(project_id=None, project_domain_id=None))


def test_only_tokens_issued_at_or_before_the_rule_are_revoked() -> None:
    """A user whose password changed at NOW keeps the tokens issued after it."""
    revocations = RevocationList()
    revocations.add(rule(user_id="u-1", issued_before=NOW))
    assert revocations.is_revoked(token_data(issued_at=NOW - 1))
    assert revocations.is_revoked(token_data(issued_at=NOW))
    assert not revocations.is_revoked(token_data(issued_at=NOW + 0.001))


def test_prune_forgets_rules_once_their_tokens_have_expired() -> None:
    revocations = RevocationList()
    gone, boundary, kept = (
        rule(user_id="u-1", expires_at=NOW - 1),
        rule(user_id="u-2", expires_at=NOW),
        rule(user_id="u-1", audit_id="audit-9", expires_at=NOW + 1),
    )
    revocations.add_all([gone, boundary, kept])
    revocations.prune(now=NOW)
    assert len(revocations) == 1
    assert not revocations.is_revoked(token_data(user_id="u-2"))
    assert not revocations.is_revoked(token_data())  # u-1's rule went; the kept one needs audit-9
    assert revocations.is_revoked(token_data(audit_id="audit-9"))
    revocations.prune(now=NOW + 2)
    assert len(revocations) == 0


def test_prune_defaults_to_the_clock() -> None:
    revocations = RevocationList()
    revocations.add_all([rule(user_id="u-1", expires_at=time.time() - 1), rule(user_id="u-2")])
    revocations.prune()
    assert len(revocations) == 0  # NOW + 3600 is long past too
    revocations.add(rule(user_id="u-3", expires_at=time.time() + 60))
    revocations.prune()
    assert len(revocations) == 1


# The index looks at only a few rules per token; it must find exactly what a scan of every
# rule would. Few distinct ids, so that rules and tokens meet often.
few = st.sampled_from(["a", "b", "c"])
rules = st.builds(
    Revocation,
    audit_id=st.none() | few,
    user_id=st.none() | few,
    project_id=st.none() | few,
    domain_id=st.none() | few,
    role_id=st.none() | few,
    issued_before=st.sampled_from([NOW - 1, NOW, NOW + 1]),
    expires_at=st.just(NOW + 3600),
).filter(lambda r: any((r.audit_id, r.user_id, r.project_id, r.domain_id, r.role_id)))
tokens = st.builds(
    TokenData,
    user_id=few,
    user_name=st.just("n"),
    user_domain_id=few,
    user_domain_name=st.just("D"),
    project_id=st.none() | few,
    project_name=st.none(),
    project_domain_id=st.none() | few,
    project_domain_name=st.none(),
    domain_id=st.none() | few,
    domain_name=st.none(),
    roles=st.lists(st.builds(RoleRef, id=few, name=st.just("r")), max_size=3).map(tuple),
    methods=st.just(("password",)),
    issued_at=st.sampled_from([NOW - 1, NOW, NOW + 1]),
    expires_at=st.just(NOW + 3600),
    audit_id=few,
)


@given(rules=st.lists(rules, max_size=8), data=tokens)
@settings(max_examples=300, deadline=None)
def test_the_index_finds_what_a_full_scan_finds(rules: list[Revocation], data: TokenData) -> None:
    revocations = RevocationList()
    revocations.add_all(rules)
    assert revocations.is_revoked(data) == any(matches(r, data) for r in rules)
