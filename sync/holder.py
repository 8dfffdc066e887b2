"""Who holds a volume: one agent per volume, its holder recorded on the volume
(``lastConnectionHost``, ``lastConnectionPid``, the heartbeat ``lastConnection``).

>>> pid_alive(os.getpid())
True
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any


def pid_alive(pid: int) -> bool:
    """True when a process ``pid`` exists on this machine.

    >>> pid_alive(os.getpid())
    True
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    return True


def holder_problem(
    vol: Mapping[str, Any], *, host: str, pid: int, now_ms: int, timeout_s: float
) -> str | None:
    """Why the agent ``(host, pid)`` may not take the volume ``vol``, or ``None``.

    The holder is the agent that wrote ``lastConnectionHost``/``lastConnectionPid``.
    It is free when it said it stopped, is this agent, its heartbeat
    (``lastConnection``) is older than ``timeout_s``, or its pid is dead on this host.

    >>> vol = {"_id": "v", "agentStatus": "idle", "lastConnection": 1000,
    ...        "lastConnectionHost": "h1", "lastConnectionPid": 42}
    >>> holder_problem(vol, host="h2", pid=7, now_ms=2000, timeout_s=300)
    "volume 'v' is held by the agent of pid 42 on h1 (heartbeat 1 s ago): stop it first; a holder that died is taken over after agentTimeout (300 s) without heartbeat"
    >>> holder_problem(vol, host="h2", pid=7, now_ms=400_000, timeout_s=300) is None
    True
    """
    if vol.get("agentStatus") in (None, "stopped"):
        return None
    h_host, h_pid = vol.get("lastConnectionHost"), vol.get("lastConnectionPid")
    if h_host is None or (h_host == host and h_pid == pid):
        return None
    age = (now_ms - int(vol.get("lastConnection") or 0)) / 1000
    if age > timeout_s:
        return None
    if h_host == host and isinstance(h_pid, int) and not pid_alive(h_pid):
        return None
    return (
        f"volume {vol.get('_id')!r} is held by the agent of pid {h_pid} on {h_host} "
        f"(heartbeat {age:.0f} s ago): stop it first; a holder that died is taken over "
        f"after agentTimeout ({timeout_s:g} s) without heartbeat"
    )


__all__ = ["holder_problem", "pid_alive"]
