"""`prefix`: the session guard before the fix (SPEC section 3a).

The adapter keeps a guard per session and a pending slot, but no owner task.
Every bypass command, `/stop` included, goes straight to the runner: `/stop`
never reaches the adapter's own task.  Nothing but the task's `finally` ever
removes the guard, and it removes whatever guard is there.  This is the code in
which issue #11016's split-brain lives; the model keeps every one of its flaws.
"""

from __future__ import annotations

from .design import Design
from .world import TaskW, World


class Prefix(Design):
    name = "prefix"
    known = {
        "no-orphan-guard": "#11016, dead owner: the task ends (a cleanup fault, a cancel) before its finally deletes G[k]",
        "no-trapped-session": "#11016: a dead or wedged owner keeps G[k]; nothing, not even /stop, frees it",
        "stop-works": "#11016: /stop answers from the runner while the adapter's task goes on",
        "dead-lock-heals": "#11016: prefix has no heal, so a dead guard answers every message as busy",
        "no-unguarded-worker": "the inline follow-up's finally deletes G[k] while the outer level still runs",
        "one-worker": "after that delete, the next message starts a second task beside the first",
        "release-by-owner": "F2 deletes whatever guard is there, a newer task's included",
        "order": "a late drain runs older follow-ups after a newer message that found the session idle",
    }

    def inbound(self, w: World, k: int, m: int) -> str:
        """H: busy -> bypass, queue or interrupt; idle -> install a guard and a task."""
        kind = w.messages[m].kind
        s = w.sessions[k]
        if s.guard is not None:
            if self.is_bypass(kind):
                return self.bypass(w, k, m)
            return self.busy(w, k, m)
        # Idle: the test and the install are one atomic step (no await between).
        s.guard = w.new_guard()
        w.create_task(k, (m,))
        return "H:start"

    def finish(self, w: World, t: TaskW) -> str:
        """F2: drain a late arrival into a new task, else delete G[k] unconditionally."""
        s = w.sessions[t.session]
        if s.pending is not None:
            p, s.pending = s.pending, None
            w.clear_guard(s.guard)
            w.create_task(t.session, p)
            return "F2:drain"
        s.guard = None  # whatever guard is there, ours or not
        return "F2:delete-guard"

