"""The checker's findings on `prefix` and `seed`, told as docs/findings.md.

Every counterexample in that file is produced here by the checker, at the
bound named beside it; the prose around it explains the race.  A test
regenerates the file and fails if it differs, so the docs cannot drift from
the model.  Regenerate with:

    python -m sessionguard.findings > docs/findings.md
"""

from __future__ import annotations

from dataclasses import dataclass

from sessionguard.model import BY_NAME, DESIGNS, Bounds, CheckerConfig, check
from sessionguard.model.narrative import narrate
from sessionguard.model.vocabulary import STOP, TEXT

THREE = Bounds(messages=3, faults=1)
FOUR_TEXT_STOP = Bounds(messages=4, faults=1, kinds=(TEXT, STOP))


@dataclass(frozen=True)
class Finding:
    design: str
    prop: str
    title: str
    bounds: Bounds
    story: str


FINDINGS = (
    Finding("prefix", "no-orphan-guard", "The dead owner (#11016)", Bounds(), """
The task that owns the session ends without running its `finally`: here it is
cancelled before its first step; with `--by-rule` the checker also shows a
cleanup await that raises or is cancelled and ends the `finally` early.  The
guard it would have deleted stays in `G[k]`, and `prefix` has nothing else
that ever removes it."""),
    Finding("prefix", "dead-lock-heals", "Every later message is answered as busy", Bounds(), """
The same dead guard, one message later: `prefix` has no heal, so the next text
is merged into the pending slot with "Interrupting current task..." and waits
behind a task that no longer exists.  This is the symptom users reported."""),
    Finding("prefix", "no-trapped-session", "No way out without a restart", Bounds(), """
From here no schedule without new faults settles the session.  For a wedged
owner (a hung runner call or send) the checker also gives the user one /stop
per session and shows that it does not help: in `prefix`, /stop goes to the
runner, not to the adapter's task."""),
    Finding("prefix", "stop-works", '"/stop" answers while the task goes on', Bounds(), """
/stop is a bypass command in `prefix`: the runner interrupts its agent, clears
`R[k]` and replies, but the adapter's task is never told.  The reply goes out
while T(m0) still works on m0 (and, if it is wedged, holds `G[k]` forever)."""),
    Finding("prefix", "no-unguarded-worker", "The inline follow-up frees the session too early", THREE, """
T(m0) runs the follow-up m1 inline, as a nested `process()` in the same task.
The inner level's `finally` deletes `G[k]` when it is done, but the outer
level of the same task still has its own `finally` to run: a live worker
with no guard, so the next message finds the session idle."""),
    Finding("prefix", "one-worker", "Two workers for one session", THREE, """
The inline follow-up's runner call fails, so the inner level takes the error
path and its `finally` drains the newer follow-up m2 into a new task, while
the outer level of T(m0) has still to run its own cleanup.  T(m2) calls the
runner beside it."""),
    Finding("prefix", "release-by-owner", "An old task deletes a newer guard", THREE, """
After the inner `finally` deleted the guard, m2 found the session idle and
got a fresh guard for T(m2).  The outer `finally` of T(m0) then deletes
"whatever guard is there": T(m2)'s.  Nothing checks whose guard it is."""),
    Finding("prefix", "order", "A late drain answers an old follow-up after a new message", FOUR_TEXT_STOP, """
The inline follow-up's runner call fails, so the inner `finally` drains m2
into a new task T(m2); m3 arrives and the outer `finally` of the same task
drains it too, into T(m3).  Two tasks now wait to start and nothing orders
them: T(m3) calls the runner first, so m2 is answered after m3 (and the two
run side by side)."""),
    Finding("seed", "one-worker", "The inline follow-up drains beside itself", THREE, """
`seed` keeps `prefix`'s inline follow-up.  T(m0) runs m1 inline; the runner
fails on it, so the inner level goes through its own `finally`, whose F2
finds m2 pending and drains it into a new task T(m2), recorded as owner.  But
T(m0)'s outer level has not finished: its cleanup still runs when T(m2)
calls the runner.  (And when the outer F2 runs, it releases the guard object
T(m2) adopted.)"""),
    Finding("seed", "no-unguarded-worker", "A second /stop releases the guard under a running task", THREE, """
Two /stops arrive before T(m0) runs its first step; each installs a command
guard, and T(m0), starting late, adopts whatever `G[k]` holds: /stop m2's
guard.  /stop m1's handoff pops `O[k]` and cancels T(m0).  /stop m2's runner
call fails; C-error finds no owner recorded (m1 popped it) and releases its
command guard, which is the guard T(m0) still runs under, its cancellation
not yet delivered."""),
    Finding("seed", "no-orphan-guard", "The identity check releases the wrong guard", THREE, """
/stop m1 arrives before T(m0)'s first step; C1 replaces the guard `start()`
made with the command guard, and T(m0)'s P1 then adopts the command guard as
its own `g`.  The command's runner call fails; C-error sees an owner recorded
and puts back the old guard, which nobody holds any more.  When T(m0)
finishes, F2 deletes `O[k]` and releases, by identity, only its own `g`: the
command guard, long gone.  The old guard stays, with no owner recorded, so
heal never fires: #11016 again, reached through the fix's own identity
check."""),
    Finding("seed", "dead-lock-heals", "That orphan guard is never healed", THREE, """
The previous trace, one message later: `G[k]` is present, no task is alive,
and since no owner is recorded the guard is not "stale".  Heal does not fire
and m2 is queued as busy, for ever."""),
    Finding("seed", "nothing-lost", "Heal throws the pending follow-up away", THREE, """
T(m0) is cancelled before it runs (a task cancelled from outside), with m1
queued.  Its guard stays, its recorded owner has finished: stale.  The next
message heals the session, and heal removes `G[k]`, `O[k]` and `P[k]`, with
m1 in it.  m1 is never answered and the user is never told."""),
    Finding("seed", "no-trapped-session", "A dead owner strands the pending slot", THREE, """
T(m0) dies before its first step with m1 pending.  It never started, so its
`finally` never runs and nothing drains m1.  Heal would fire, but only when
the user writes again, and then it drops m1 (previous finding).  Without a
new message m1 waits for ever."""),
    Finding("seed", "handoff", "The old task answers the follow-up during /stop", THREE, """
/stop m1 installs its guard and m2 queues behind it, as designed.  But T(m0),
still finishing, reaches P3, finds m2 in `P[k]` and runs it inline, before
/stop's runner call has even returned.  C2 will then cancel T(m0), which by
now works on m2: the message the user sent after /stop is cancelled by that
/stop."""),
    Finding("seed", "stop-works", "The second /stop answers while the task still runs", THREE, """
Two /stops are in flight.  The first pops `O[k]`, cancels T(m0) and waits
for it.  The second finds no owner, replies "No active task to stop" and
releases the guard, while T(m0) still works on m0."""),
    Finding("seed", "release-by-owner", "C4 overwrites a later command's guard", FOUR_TEXT_STOP, """
/stop m2 and /stop m3 are both in flight, and m3 installed its guard last.
m2 finishes first: C4 pops the pending follow-up, its release by identity
finds m3's guard and leaves it, and `start()` then installs a fresh guard over
it unconditionally.  The later command is still in flight without its
guard."""),
    Finding("seed", "order", "A stranded follow-up is answered after a newer message", FOUR_TEXT_STOP, """
/stop m2 cancels T(m0) with m1 pending; then its reply send fails, and
C-error releases the command guard (no owner is recorded any more) but
leaves `P[k]` as it is.  m3 finds the session idle and starts; when T(m3)
finishes it drains m1, which the user sent before m3."""),
)


def _bounds_text(b: Bounds) -> str:
    text = f"--messages {b.messages} --faults {b.faults}"
    if b.kinds != Bounds().kinds:
        text += f" --kinds {','.join(b.kinds)}"
    return text


def render() -> str:
    lines = [
        "# What the checker finds in `prefix` and `seed`",
        "",
        "Generated by `python -m sessionguard.findings` from the model; a test fails if this",
        "file is out of date.  Each section is the shortest counterexample at the bound shown",
        "(reproduce it with the command under its title), then what happened, in words.",
        "How `reference` closes each of them: see the docstring of `model/reference.py`",
        "(R1 to R6).",
    ]
    cache: dict[tuple[str, Bounds], dict[str, object]] = {}
    for f in FINDINGS:
        key = (f.design, f.bounds)
        if key not in cache:
            wanted = tuple(BY_NAME[g.prop] for g in FINDINGS if (g.design, g.bounds) == key)
            report = check(DESIGNS[f.design], f.bounds, CheckerConfig(properties=wanted))
            cache[key] = {v.prop.name: v for v in report.verdicts}
        v = cache[key][f.prop]
        prop = BY_NAME[f.prop]
        trace = getattr(v, "trace", None)
        lines += ["", f"## {f.design}: {f.title}", ""]
        lines.append(f"Property {prop.number}, `{prop.name}`. "
                     f"`sessionguard check --design {f.design} {_bounds_text(f.bounds)} --property {f.prop}`")
        lines.append(f.story)
        if trace is None:
            lines += ["", "(not found at this bound: the model has changed; update this file)"]
            continue
        lines += ["", f"Condition that failed: {getattr(v, 'condition', '')}", "", "```"]
        lines += narrate(trace)
        lines.append("```")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render(), end="")
