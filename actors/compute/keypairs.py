"""Keypairs: SSH public keys a user keeps to give their servers. They belong to the user, not
the project (as in Nova), so a user sees the same keypairs in every project."""

import asyncio
import base64
import hashlib

import asyncpg
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from actors.compute import quota_sql
from fabric.actor import handles
from fabric.service import ServiceActor, require_member
from protocol.compute import CreateKeypair, DeleteKeypair, GetKeypair, KeypairList, KeypairView, ListKeypairs
from protocol.envelope import Context
from protocol.errors import Conflict, Invalid, NotFound, QuotaExceeded
from protocol.system import Done

COLUMNS = "name, user_id, public_key, fingerprint, type, extract(epoch FROM created_at) AS created"


def fingerprint(public_key: str) -> str:
    """Nova's: the md5 of the key's blob, in colon-separated hex (as `ssh-keygen -E md5`)."""
    blob = base64.b64decode(public_key.split()[1])
    return ":".join(f"{b:02x}" for b in hashlib.md5(blob, usedforsecurity=False).digest())


def checked(public_key: str) -> str:
    """The key in one canonical line, or Invalid: only OpenSSH public keys are accepted."""
    try:
        key = serialization.load_ssh_public_key(public_key.strip().encode())
    except (ValueError, UnsupportedAlgorithm, IndexError) as exc:
        raise Invalid("keypair.public_key", f"not an OpenSSH public key ({exc})") from None
    canonical = key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    comment = public_key.strip().split(None, 2)[2:] if len(public_key.split()) > 2 else []
    return " ".join([canonical, *comment])


def generate() -> tuple[str, str]:
    """A new RSA pair, as Nova generates when no public key is given: (public, private PEM)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return f"{public.decode()} Generated-by-Fabric", private


def view(r: asyncpg.Record, private_key: str | None = None) -> KeypairView:
    return KeypairView(
        name=r["name"],
        user_id=r["user_id"],
        public_key=r["public_key"],
        fingerprint=r["fingerprint"],
        type=r["type"],
        created_at=float(r["created"]),
        private_key=private_key,
    )


class Keypairs(ServiceActor):
    """The keypair handlers of the compute service (mixed into `actor.Compute`)."""

    @handles(CreateKeypair)
    async def create_keypair(self, msg: CreateKeypair, ctx: Context) -> KeypairView:
        require_member(ctx, "os_compute_api:os-keypairs:create")
        private = None
        if msg.public_key is None:
            public, private = await asyncio.to_thread(generate)
        else:
            public = checked(msg.public_key)
        user = ctx.user_id or ""
        async with self.store.transaction() as tx:
            await tx.execute("SELECT pg_advisory_xact_lock(hashtext('compute.keypairs:' || $1))", user)
            count = await tx.fetchval("SELECT count(*) FROM compute.keypairs WHERE user_id = $1", user)
            limit = (await quota_sql.limits(tx, ctx.project_id or ""))["key_pairs"]
            if 0 <= limit <= count:
                raise QuotaExceeded("key_pairs", str(limit))
            row = await tx.fetchrow(
                f"""INSERT INTO compute.keypairs (user_id, name, public_key, fingerprint)
                    VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING {COLUMNS}""",
                user, msg.name, public, fingerprint(public),
            )  # fmt: skip
        if row is None:
            raise Conflict("keypair", f"key pair '{msg.name}' already exists")
        return view(row, private)

    @handles(GetKeypair)
    async def get_keypair(self, msg: GetKeypair, ctx: Context) -> KeypairView:
        async with self.store.transaction() as tx:
            row = await tx.fetchrow(
                f"SELECT {COLUMNS} FROM compute.keypairs WHERE user_id = $1 AND name = $2",
                ctx.user_id,
                msg.name,
            )
        if row is None:
            raise NotFound("keypair", msg.name)
        return view(row)

    @handles(ListKeypairs)
    async def list_keypairs(self, msg: ListKeypairs, ctx: Context) -> KeypairList:
        async with self.store.transaction() as tx:
            rows = await tx.fetch(
                f"SELECT {COLUMNS} FROM compute.keypairs WHERE user_id = $1 ORDER BY name", ctx.user_id
            )
        return KeypairList(items=tuple(view(r) for r in rows))

    @handles(DeleteKeypair)
    async def delete_keypair(self, msg: DeleteKeypair, ctx: Context) -> Done:
        require_member(ctx, "os_compute_api:os-keypairs:delete")
        async with self.store.transaction() as tx:
            done = await tx.execute(
                "DELETE FROM compute.keypairs WHERE user_id = $1 AND name = $2", ctx.user_id, msg.name
            )
        if done.endswith(" 0"):
            raise NotFound("keypair", msg.name)
        return Done()
