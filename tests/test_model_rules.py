"""Each rule of each design, driven one step at a time."""

from __future__ import annotations

import pytest
from modelkit import drive

from sessionguard.model import DESIGNS
from sessionguard.model.vocabulary import (
    ANSWERED,
    C_AWAIT,
    CLEANUP_RAISES,
    DEAD,
    DISCARDED,
    HOOKS,
    INBAND,
    REAP,
    RUNNER,
    RUNNER_RAISES,
    SEND_REPLY,
    SENT,
    STALE,
    START,
    TASK_CANCELLED,
    TYPING,
)

prefix, seed, reference = DESIGNS["prefix"], DESIGNS["seed"], DESIGNS["reference"]
BODY = [("T0", "P1"), ("T0", "P2:send-reply"), ("T0", "P3:to-finally"), ("T0", "F1:typing")]


# --- rules every design shares ---------------------------------------------------------


@pytest.mark.parametrize("design", [prefix, seed, reference], ids=lambda d: d.name)
def test_idle_text_installs_a_guard_and_a_task(design):
    s = drive(design, [("platform:text:0", "H:start")])[-1]
    assert s.sessions[0].guard is not None
    assert [t.pc for t in s.tasks] == [START]
    assert s.sessions[1].guard is None  # other sessions untouched


@pytest.mark.parametrize("design", [prefix, seed, reference], ids=lambda d: d.name)
def test_busy_text_merges_and_interrupts_busy_photo_only_merges(design):
    s = drive(design, [("platform:text:0", "H:start"), ("platform:photo:0", "H:busy-photo")])[-1]
    assert s.sessions[0].pending == (1,)
    assert s.sessions[0].guard not in s.set_guards
    s = drive(design, [("platform:text:0", "H:start"), ("platform:photo:0", "H:busy-photo"),
                       ("platform:text:0", "H:busy-interrupt")])[-1]
    assert s.sessions[0].pending == (1, 2)  # one slot, arrival order
    assert s.sessions[0].guard in s.set_guards


@pytest.mark.parametrize("design", [prefix, seed, reference], ids=lambda d: d.name)
def test_approve_while_busy_goes_straight_to_the_runner(design):
    s = drive(design, [("platform:text:0", "H:start"), ("platform:/approve:0", "H:bypass")])[-1]
    assert s.sessions[0].pending is None
    assert s.messages[1].runs == 1
    s = drive(design, [("platform:text:0", "H:start"), ("platform:/approve:0", "H:bypass"),
                       ("H1", "B1:runner-replied"), ("H1", "B2:reply-sent")])[-1]
    assert s.messages[1].reply == SENT and s.handlers == ()


@pytest.mark.parametrize("design", [prefix, seed, reference], ids=lambda d: d.name)
def test_a_plain_message_runs_to_completion_and_frees_the_session(design):
    states = drive(design, [("platform:text:0", "H:start"), *BODY, ("T0", "F2:")])
    assert states[2].tasks[0].pc == RUNNER and states[2].sessions[0].runner == 0
    assert states[3].tasks[0].pc == SEND_REPLY and states[3].sessions[0].runner is None
    end = states[-1]
    assert end.tasks == () and end.sessions[0].guard is None
    assert end.messages[0].fate == ANSWERED and end.messages[0].reply == SENT


@pytest.mark.parametrize("design", [prefix, seed, reference], ids=lambda d: d.name)
def test_runner_error_sends_an_error_notice_then_cleans_up(design):
    states = drive(design, [("platform:text:0", "H:start"), ("T0", "P1"),
                            ("T0", "P1:runner-raised", RUNNER_RAISES), ("T0", "E1:error-sent")])
    assert states[-1].tasks[0].pc == TYPING
    assert states[-1].messages[0].fate == ANSWERED


# --- prefix -------------------------------------------------------------------------------


def test_prefix_stop_while_busy_is_only_a_bypass():
    s = drive(prefix, [("platform:text:0", "H:start"), ("platform:/stop:0", "H:bypass")])[-1]
    assert [h.pc for h in s.handlers] == ["B1:runner"]
    assert s.sessions[0].owner is None  # prefix records no owner


def test_prefix_finally_deletes_whatever_guard_is_there():
    # T0 runs m1 inline after m0; its inner F2 deletes the guard; the outer F2
    # later deletes whatever guard is there by then, even a newer task's.
    s = drive(prefix, [
        ("platform:text:0", "H:start"), ("T0", "P1"), ("platform:text:0", "H:busy-interrupt"),
        ("T0", "P2:stale"), ("T0", "P3:inline-process"), ("T0", "P2:send-reply"),
        ("T0", "P3:to-finally"), ("T0", "F1:typing"), ("T0", "F2:delete-guard"),
        ("platform:text:0", "H:start"),  # T1 starts: the session looked idle
        ("T0", "F1:typing"), ("T0", "F2:delete-guard"),
    ])[-1]
    assert s.sessions[0].guard is None and len(s.tasks) == 1  # T1 runs unguarded


def test_prefix_cleanup_fault_leaves_the_guard_forever():
    s = drive(prefix, [("platform:text:0", "H:start"), *BODY,
                       ("T0", "F1:cleanup-raised", CLEANUP_RAISES),
                       ("platform:text:0", "H:busy-interrupt")])[-1]
    assert s.tasks == () and s.sessions[0].guard is not None and s.sessions[0].pending == (1,)


def test_prefix_inband_cleanup_then_inline_process_in_the_same_task():
    states = drive(prefix, [("platform:text:0", "H:start"), ("T0", "P1"),
                            ("platform:photo:0", "H:busy-photo"), ("T0", "P2:send-reply"),
                            ("T0", "P3:pop-pending"), ("T0", "P3:inline-process")])
    assert states[-2].tasks[0].pc == INBAND
    t = states[-1].tasks[0]
    assert len(t.levels) == 2 and t.levels[1].event == (1,) and t.pc == RUNNER


# --- seed ---------------------------------------------------------------------------------


def test_seed_start_records_the_owner_and_finally_clears_it():
    states = drive(seed, [("platform:text:0", "H:start"), *BODY, ("T0", "F2:release-own-guard")])
    assert states[1].sessions[0].owner == 0
    assert states[-1].sessions[0].owner is None and states[-1].sessions[0].guard is None


def test_seed_heal_removes_a_stale_guard_and_the_pending_slot():
    s = drive(seed, [("platform:text:0", "H:start"), ("platform:text:0", "H:busy"),
                     ("environment", "cancel-task", TASK_CANCELLED), ("T0", "cancelled-before-start")])[-1]
    assert s.sessions[0].owner == DEAD and s.sessions[0].pending == (1,)
    s = drive(seed, [("platform:text:0", "H:start"), ("platform:text:0", "H:busy"),
                     ("environment", "cancel-task", TASK_CANCELLED), ("T0", "cancelled-before-start"),
                     ("platform:text:0", "H:heal, then start")])[-1]
    assert s.sessions[0].pending is None  # m1 is gone: the seed finding
    assert s.messages[1].fate is None and s.messages[1].runs == 0


def test_seed_handoff_c1_to_c4():
    states = drive(seed, [
        ("platform:text:0", "H:start"), ("T0", "P1"), ("platform:/stop:0", "H:C1-handoff"),
        ("platform:photo:0", "H:busy-photo"),
        ("H1", "C1:runner-replied (stopped), C2:cancel-owner"),
        ("T0", "P1:runner:cancelled"), ("T0", "F1:typing"), ("T0", "F2:drain"),
    ])
    c1 = states[3]
    assert c1.handlers[0].cg == c1.sessions[0].guard  # the command guard is installed
    c2 = states[5]
    assert c2.handlers[0].pc == C_AWAIT and c2.sessions[0].owner is None  # O[k] popped
    assert c2.tasks[0].cancel == "command:1"
    assert c2.sessions[0].runner is None
    # T0's finally drained the follow-up into a new owner while the command is in flight
    end = states[-1]
    assert end.messages[0].fate == DISCARDED
    assert [t.levels[0].event for t in end.tasks] == [(2,)]


def test_seed_c4_pops_pending_releases_the_command_guard_and_starts():
    s = drive(seed, [
        ("platform:text:0", "H:start"), ("platform:/stop:0", "H:C1-handoff"),
        ("platform:text:0", "H:busy"),
        ("H1", "C1:runner-replied"), ("T0", "cancelled-before-start"),
        ("H1", "C2:owner-ended"), ("H1", "C4:release-and-start-pending"),
    ])[-1]
    assert s.handlers == () and s.messages[1].reply == SENT
    assert [t.levels[0].event for t in s.tasks] == [(2,)] and s.sessions[0].owner == 0


def test_seed_c_error_restores_the_old_guard():
    s = drive(seed, [("platform:text:0", "H:start"), ("platform:/stop:0", "H:C1"),
                     ("H1", "C1:runner:raised, C-error:restore-old-guard", RUNNER_RAISES)])[-1]
    assert s.handlers == () and s.sessions[0].guard is not None


def test_seed_release_checks_identity():
    # T0 adopts the command's guard in P1; C-error then restores the old guard;
    # T0's release by identity leaves that guard behind (a seed finding).
    s = drive(seed, [("platform:text:0", "H:start"), ("platform:/stop:0", "H:C1"), *BODY,
                     ("H1", "C1:runner:raised", RUNNER_RAISES), ("T0", "F2:release-own-guard")])[-1]
    assert s.tasks == () and s.sessions[0].guard is not None and s.sessions[0].owner is None


def test_seed_swallows_a_cancel_at_the_first_cleanup_await():
    s = drive(seed, [("platform:text:0", "H:start"), *BODY[:3],
                     ("environment", "cancel-task", TASK_CANCELLED),
                     ("T0", "F1:typing:cancel-swallowed")])[-1]
    assert s.tasks[0].pc == HOOKS and s.tasks[0].cancel is None


# --- reference ----------------------------------------------------------------------------


def test_reference_never_swallows_a_cancel():
    s = drive(reference, [("platform:text:0", "H:start"), *BODY[:3],
                          ("environment", "cancel-task", TASK_CANCELLED),
                          ("T0", "F1:cleanup-cancelled, F2:release-own-guard")])[-1]
    assert s.tasks == () and s.sessions[0].guard is None


def test_reference_finally_survives_a_cleanup_fault():
    s = drive(reference, [("platform:text:0", "H:start"), ("platform:photo:0", "H:busy"), *BODY,
                          ("T0", "F1:cleanup-raised, F2:hand-pending-to-new-owner", CLEANUP_RAISES)])[-1]
    assert [t.levels[0].event for t in s.tasks] == [(1,)]
    assert s.sessions[0].guard == s.tasks[0].levels[0].guard  # a fresh guard for the new owner


def test_reference_task_cancelled_before_start_is_finished_by_its_done_callback():
    states = drive(reference, [("platform:text:0", "H:start"), ("platform:text:0", "H:busy"),
                               ("environment", "cancel-task", TASK_CANCELLED),
                               ("T0", "cancelled-before-start"),
                               ("T0", "done-callback: F2:hand-pending-to-new-owner")])
    assert states[-2].tasks[0].pc == REAP
    assert [t.levels[0].event for t in states[-1].tasks] == [(1,)]


def test_reference_heal_finishes_the_dead_owner_instead_of_dropping_pending():
    s = drive(reference, [("platform:text:0", "H:start"), ("platform:text:0", "H:busy"),
                          ("environment", "cancel-task", TASK_CANCELLED),
                          ("T0", "cancelled-before-start"),
                          ("platform:text:0", "H:done-callback: F2:hand-pending-to-new-owner")])[-1]
    assert s.sessions[0].pending == (2,)  # queued behind the follow-up m1, in order
    assert [t.levels[0].event for t in s.tasks] == [(1,)]


def test_reference_finally_leaves_a_taken_over_session_to_the_command():
    s = drive(reference, [("platform:text:0", "H:start"), *BODY[:1], ("platform:/stop:0", "H:C1"),
                          ("platform:text:0", "H:busy"), *BODY[1:],
                          ("T0", "F2:session-taken-over")])[-1]
    assert s.sessions[0].pending == (2,) and s.sessions[0].guard == s.handlers[0].cg


def test_reference_command_waits_for_the_owner_and_keeps_o_k():
    s = drive(reference, [("platform:text:0", "H:start"), ("T0", "P1"), ("platform:/stop:0", "H:C1"),
                          ("H1", "C1:runner-replied (stopped), C2:cancel-owner")])[-1]
    assert s.sessions[0].owner == 0 and s.handlers[0].pc == C_AWAIT


def test_reference_command_error_still_completes_the_handoff():
    s = drive(reference, [("platform:text:0", "H:start"), ("platform:/stop:0", "H:C1"),
                          ("platform:photo:0", "H:busy"),
                          ("H1", "C1:runner-raised, C2:cancel-owner", RUNNER_RAISES),
                          ("T0", "cancelled-before-start"), ("T0", "done-callback"),
                          ("H1", "C2:owner-ended"), ("H1", "C4:hand-pending-to-new-owner")])[-1]
    assert [t.levels[0].event for t in s.tasks] == [(2,)] and s.messages[0].fate == DISCARDED


def test_reference_keeps_the_stale_reply_rule():
    s = drive(reference, [("platform:text:0", "H:start"), ("T0", "P1"),
                          ("platform:text:0", "H:busy-interrupt"), ("T0", "P2:stale")])[-1]
    assert s.messages[0].reply == STALE and s.tasks[0].pc == TYPING
