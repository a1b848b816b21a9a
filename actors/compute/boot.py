"""A server's life as Nova tells it: vm_state, task_state, power_state, and the status users see.

Pure: which state a server is in, what each event moves it to, which actions are allowed where.
The actor stores each move with `UPDATE ... WHERE id = $1 AND task_state = <expected>`, so a
replayed event moves nothing.

    create ───► building/scheduling ──placed──► building/spawning ──spawned──► active
                        │                              │ failed (attempts left): back to scheduling
                        └── no valid host ──► error ◄──┘ failed (none left), or timed out
    active ──stop──► active/powering-off ──► stopped ──start──► stopped/powering-on ──► active
    active ──reboot──► active/rebooting(_hard) ──► active
    any ──delete──► <state>/deleting ──guest destroyed, allocation released──► deleted (a row
    kept apart for `deleted_server_retention_s`, seen only by `changes-since` and the DELETED filter)
"""

from enum import IntEnum, StrEnum

from protocol.compute import PowerAction


class VmState(StrEnum):
    BUILDING = "building"
    ACTIVE = "active"
    STOPPED = "stopped"
    ERROR = "error"
    #: Only ever read back from compute.deleted_servers: a live row is never in it.
    DELETED = "deleted"


class Task(StrEnum):
    SCHEDULING = "scheduling"
    SPAWNING = "spawning"
    POWERING_OFF = "powering-off"
    POWERING_ON = "powering-on"
    REBOOTING = "rebooting"
    REBOOTING_HARD = "rebooting_hard"
    DELETING = "deleting"


class Power(IntEnum):
    NOSTATE = 0
    RUNNING = 1
    SHUTDOWN = 4


def status(vm_state: str, task_state: str | None) -> str:
    """Nova's `status` for a vm_state and task_state (nova/api/openstack/common.py's table)."""
    if vm_state == VmState.BUILDING:
        return "BUILD"
    if vm_state == VmState.ACTIVE:
        if task_state == Task.REBOOTING:
            return "REBOOT"
        if task_state == Task.REBOOTING_HARD:
            return "HARD_REBOOT"
        return "ACTIVE"
    if vm_state == VmState.STOPPED:
        return "SHUTOFF"
    if vm_state == VmState.DELETED:
        return "DELETED"
    return "ERROR"


#: Status filter → the vm_states (and task_state, when it decides) that show it.
STATUS_FILTER: dict[str, tuple[str, str | None]] = {
    "BUILD": (VmState.BUILDING, None),
    "ACTIVE": (VmState.ACTIVE, None),
    "SHUTOFF": (VmState.STOPPED, None),
    "ERROR": (VmState.ERROR, None),
    "DELETED": (VmState.DELETED, None),
    "REBOOT": (VmState.ACTIVE, Task.REBOOTING),
    "HARD_REBOOT": (VmState.ACTIVE, Task.REBOOTING_HARD),
}

#: A power action → (the vm_states it is allowed from, the task it starts).
POWER_ACTIONS: dict[PowerAction, tuple[frozenset[str], Task]] = {
    "start": (frozenset({VmState.STOPPED}), Task.POWERING_ON),
    "stop": (frozenset({VmState.ACTIVE, VmState.ERROR}), Task.POWERING_OFF),
    "soft-reboot": (frozenset({VmState.ACTIVE}), Task.REBOOTING),
    "hard-reboot": (frozenset({VmState.ACTIVE, VmState.STOPPED, VmState.ERROR}), Task.REBOOTING_HARD),
}

#: A power task → the action that started it (to send it again).
ACTION_OF_TASK: dict[str, PowerAction] = {task: action for action, (_, task) in POWER_ACTIONS.items()}

#: Tasks that belong to the boot saga: power reports do not interrupt them.
BOOT_TASKS = frozenset({Task.SCHEDULING, Task.SPAWNING})


def after_power_report(power: str) -> tuple[VmState, Power]:
    """The vm_state and power_state a server takes when its host reports this power state."""
    if power == "running":
        return VmState.ACTIVE, Power.RUNNING
    if power == "shutdown":
        return VmState.STOPPED, Power.SHUTDOWN
    return VmState.ERROR, Power.NOSTATE
