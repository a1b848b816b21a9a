"""Password hashing with argon2id, off the event loop.

"production" is argon2-cffi's default profile (RFC 9106's low-memory choice: 3 passes over
64 MiB, 4 lanes): 170-190 ms per hash on this 2-core machine (bench/RESULTS.md); "minimal" exists so that test
suites can create many users quickly and must never be used for a real cloud. A hash records its
own parameters, so changing the profile affects new hashes only, and `needs_rehash` tells when
an old one should be replaced at the next successful login.
"""

import asyncio
from typing import Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

Cost = Literal["production", "minimal"]

_HASHERS: dict[str, PasswordHasher] = {
    "production": PasswordHasher(),
    "minimal": PasswordHasher(time_cost=1, memory_cost=8, parallelism=1),
}

# Verified against when the user does not exist, so that a wrong user name costs the same time
# as a wrong password and does not reveal which names exist.
_DECOY = {cost: hasher.hash("decoy password") for cost, hasher in _HASHERS.items()}


async def hash_password(password: str, cost: Cost) -> str:
    return await asyncio.to_thread(_HASHERS[cost].hash, password)


def _verify(cost: Cost, stored: str | None, password: str) -> bool:
    try:
        return _HASHERS[cost].verify(stored or _DECOY[cost], password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


async def verify_password(stored: str | None, password: str, cost: Cost) -> bool:
    """True if `password` matches `stored`; None (no user, no password) never matches."""
    return await asyncio.to_thread(_verify, cost, stored, password)
