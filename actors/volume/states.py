"""A volume's and a snapshot's life in Cinder's statuses: which move each step makes, and what
ends a transitional status that outlived its deadline. Pure, so it is tested without a database.

The actor stores each move as `UPDATE ... SET status = <to> WHERE id = $1 AND status = ANY(<from>)`
(`sql.move`), so a replayed message, or a step another replica did first, changes nothing.
"""

from enum import StrEnum


class Status(StrEnum):
    CREATING = "creating"
    AVAILABLE = "available"
    ATTACHING = "attaching"
    IN_USE = "in-use"
    DETACHING = "detaching"
    EXTENDING = "extending"
    DELETING = "deleting"
    ERROR = "error"
    ERROR_DELETING = "error_deleting"
    ERROR_EXTENDING = "error_extending"


S = Status

#: Statuses on the way somewhere: none may last past a deadline (protocol.volume.TRANSITIONAL).
TRANSITIONAL = frozenset({S.CREATING, S.ATTACHING, S.DETACHING, S.EXTENDING, S.DELETING})

#: Where a user may delete a volume from, as Cinder allows (and `error_deleting`, to try again).
DELETABLE = frozenset({S.AVAILABLE, S.ERROR, S.ERROR_EXTENDING, S.ERROR_DELETING})

#: Each step of a volume's sagas: (the statuses it moves from, the status it moves to).
MOVES: dict[str, tuple[frozenset[Status], Status]] = {
    "file_created": (frozenset({S.CREATING}), S.AVAILABLE),
    "create_failed": (frozenset({S.CREATING}), S.ERROR),
    "extend": (frozenset({S.AVAILABLE}), S.EXTENDING),
    "file_resized": (frozenset({S.EXTENDING}), S.AVAILABLE),
    "resize_failed": (frozenset({S.EXTENDING}), S.ERROR_EXTENDING),
    "delete": (DELETABLE, S.DELETING),
    "delete_failed": (frozenset({S.DELETING}), S.ERROR_DELETING),
    "reserve": (frozenset({S.AVAILABLE}), S.ATTACHING),
    "complete_attach": (frozenset({S.ATTACHING}), S.IN_USE),
    "begin_detach": (frozenset({S.IN_USE}), S.DETACHING),
    "abort_detach": (frozenset({S.DETACHING}), S.IN_USE),
    "remove_attachment": (frozenset({S.ATTACHING, S.IN_USE, S.DETACHING}), S.AVAILABLE),
    "abandon_attach": (frozenset({S.ATTACHING}), S.AVAILABLE),
}

#: What an agent's VolumeFileFailed moves a volume by, per its `operation`.
FAILED_OPERATION = {"create": "create_failed", "resize": "resize_failed", "delete": "delete_failed"}

#: A transitional status past its deadline: the move that ends it, and the reason recorded (None:
#: the volume is usable again, nothing to explain). Attaching and detaching are compute's to
#: finish; if it never does, the volume returns to where it was before (`available` for an
#: attach that never completed, `in-use` for a detach the guest never confirmed).
DEADLINE: dict[Status, tuple[str, str | None]] = {
    S.CREATING: ("create_failed", "Creating the volume did not finish within {deadline}."),
    S.EXTENDING: ("resize_failed", "Extending the volume did not finish within {deadline}."),
    S.DELETING: ("delete_failed", "Deleting the volume did not finish within {deadline}."),
    S.ATTACHING: ("abandon_attach", None),
    S.DETACHING: ("abort_detach", None),
}


def move(status: str, step: str) -> Status | None:
    """The status `step` moves a volume in `status` to; None: not from here (replayed, or late)."""
    sources, target = MOVES[step]
    return target if status in sources else None


class SnapshotStatus(StrEnum):
    CREATING = "creating"
    AVAILABLE = "available"
    DELETING = "deleting"
    ERROR = "error"
    ERROR_DELETING = "error_deleting"


SS = SnapshotStatus

SNAPSHOT_TRANSITIONAL = frozenset({SS.CREATING, SS.DELETING})
SNAPSHOT_DELETABLE = frozenset({SS.AVAILABLE, SS.ERROR, SS.ERROR_DELETING})

SNAPSHOT_MOVES: dict[str, tuple[frozenset[SnapshotStatus], SnapshotStatus]] = {
    "file_created": (frozenset({SS.CREATING}), SS.AVAILABLE),
    "create_failed": (frozenset({SS.CREATING}), SS.ERROR),
    "delete": (SNAPSHOT_DELETABLE, SS.DELETING),
    "delete_failed": (frozenset({SS.DELETING}), SS.ERROR_DELETING),
}

SNAPSHOT_FAILED_OPERATION = {"create": "create_failed", "delete": "delete_failed"}

SNAPSHOT_DEADLINE: dict[SnapshotStatus, tuple[str, str]] = {
    SS.CREATING: ("create_failed", "Creating the snapshot did not finish within {deadline}."),
    SS.DELETING: ("delete_failed", "Deleting the snapshot did not finish within {deadline}."),
}

#: Volume statuses a snapshot may be taken in: `in-use` only when forced (Cinder's rule).
SNAPSHOT_OF = frozenset({S.AVAILABLE})
SNAPSHOT_OF_FORCED = frozenset({S.AVAILABLE, S.IN_USE})


def snapshot_move(status: str, step: str) -> SnapshotStatus | None:
    sources, target = SNAPSHOT_MOVES[step]
    return target if status in sources else None
