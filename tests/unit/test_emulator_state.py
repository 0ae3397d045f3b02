"""The W&B emulator's queue semantics: priorities, claims, claim expiry, acks, failures,
run states and persistence across a restart."""

from __future__ import annotations

from pathlib import Path

import pytest

from localenv.wandb_emulator.state import LAUNCH_PROJECT, EmulatorState, StateError, User


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_state(clock: FakeClock | None = None, **kwargs: object) -> tuple[EmulatorState, User, User]:
    state = EmulatorState(clock=clock or FakeClock(), **kwargs)  # type: ignore[arg-type]
    alice = state.add_user("local-" + "a" * 40, "alice", "acme")
    bob = state.add_user("local-" + "b" * 40, "bob", "acme")
    return state, alice, bob


def spec(n: int) -> dict:
    return {"entity": "acme", "project": "demo", "run_id": f"run{n}", "docker": {"docker_image": "busybox"}}


def test_fifo_without_prioritization() -> None:
    state, alice, _ = make_state()
    queue = state.create_queue("acme", LAUNCH_PROJECT, "q")
    ids = [state.push(queue, spec(i), priority=4 - i).id for i in range(3)]
    popped = [state.pop(queue, alice, None) for _ in range(3)]
    assert [p.id for p in popped if p] == ids
    assert state.pop(queue, alice, None) is None


def test_priority_then_fifo_with_v0() -> None:
    state, alice, _ = make_state()
    queue = state.create_queue("acme", LAUNCH_PROJECT, "q", prioritization_mode="V0")
    low = state.push(queue, spec(1), priority=3)
    first_high = state.push(queue, spec(2), priority=0)
    default = state.push(queue, spec(3))
    second_high = state.push(queue, spec(4), priority=0)
    order = [state.pop(queue, alice, None).id for _ in range(4)]  # type: ignore[union-attr]
    assert order == [first_high.id, second_high.id, default.id, low.id]


def test_priority_out_of_range_refused() -> None:
    state, _, _ = make_state()
    queue = state.create_queue("acme", LAUNCH_PROJECT, "q", prioritization_mode="V0")
    with pytest.raises(StateError, match="priority"):
        state.push(queue, spec(1), priority=7)


def test_pop_records_the_claim() -> None:
    state, alice, _ = make_state()
    queue = state.create_queue("acme", LAUNCH_PROJECT, "q")
    agent = state.create_agent("acme", LAUNCH_PROJECT, [queue.id], "host", {}, "v")
    item = state.push(queue, spec(1))
    popped = state.pop(queue, alice, agent.id)
    assert popped is not None and popped.id == item.id
    assert (popped.state, popped.claimed_by_user, popped.claimed_by_agent) == ("CLAIMED", "alice", agent.id)


def test_unacked_claim_returns_to_the_queue_after_the_timeout() -> None:
    clock = FakeClock()
    state, alice, bob = make_state(clock, claim_timeout=30)
    queue = state.create_queue("acme", LAUNCH_PROJECT, "q")
    item = state.push(queue, spec(1))
    assert state.pop(queue, alice, None) is not None
    clock.now += 29
    assert state.pop(queue, bob, None) is None, "still claimed before the timeout"
    clock.now += 2
    again = state.pop(queue, bob, None)
    assert again is not None and again.id == item.id and again.claimed_by_user == "bob"
    assert again.claim_count == 2
    assert not state.ack(item.id, alice, "run1"), "the expired claimer may no longer ack"
    assert state.ack(item.id, bob, "run1")


def test_ack_rules() -> None:
    state, alice, bob = make_state()
    queue = state.create_queue("acme", LAUNCH_PROJECT, "q")
    item = state.push(queue, spec(1))
    assert not state.ack(item.id, alice, "run1"), "a pending item cannot be acked"
    assert not state.ack("nope", alice, "run1"), "an unknown item cannot be acked"
    state.pop(queue, alice, None)
    assert not state.ack(item.id, bob, "run1"), "only the claimer may ack"
    assert state.ack(item.id, alice, "run1")
    assert not state.ack(item.id, alice, "run1"), "a second ack fails"
    acked = state.get_item(item.id)
    assert acked is not None and (acked.state, acked.associated_run_id) == ("LEASED", "run1")
    run = state.get_run("acme", "demo", "run1")
    assert run is not None and run.state == "pending", "the ack creates a run that has not started"


def test_acked_item_never_expires() -> None:
    clock = FakeClock()
    state, alice, bob = make_state(clock, claim_timeout=5)
    queue = state.create_queue("acme", LAUNCH_PROJECT, "q")
    item = state.push(queue, spec(1))
    state.pop(queue, alice, None)
    state.ack(item.id, alice, "run1")
    clock.now += 100
    assert state.pop(queue, bob, None) is None
    assert state.get_item(item.id).state == "LEASED"  # type: ignore[union-attr]


def test_auto_init_on_ack_starts_the_run() -> None:
    state, alice, _ = make_state(auto_init_on_ack=True)
    queue = state.create_queue("acme", LAUNCH_PROJECT, "q")
    item = state.push(queue, spec(1))
    state.pop(queue, alice, None)
    state.ack(item.id, alice, "run1")
    assert state.get_run("acme", "demo", "run1").state == "running"  # type: ignore[union-attr]


def test_fail_and_warn() -> None:
    state, alice, _ = make_state()
    queue = state.create_queue("acme", LAUNCH_PROJECT, "q")
    item = state.push(queue, spec(1))
    assert not state.fail(item.id, "boom", "agent", None), "a pending item cannot fail"
    state.pop(queue, alice, None)
    assert state.warn(item.id, "Unschedulable", "Kubernetes", [])
    assert state.fail(item.id, "boom", "run", ["x/error/error.log"])
    failed = state.get_item(item.id)
    assert failed is not None and failed.state == "FAILED"
    assert failed.error == {"message": "boom", "stage": "run", "filePaths": ["x/error/error.log"]}
    assert failed.warnings == [{"message": "Unschedulable", "stage": "Kubernetes", "filePaths": []}]
    assert not state.fail(item.id, "again", "run", None)


def test_terminal_run_state_finishes_the_item() -> None:
    state, alice, _ = make_state()
    queue = state.create_queue("acme", LAUNCH_PROJECT, "q")
    item = state.push(queue, spec(1))
    state.pop(queue, alice, None)
    state.ack(item.id, alice, "run1")
    state.set_run_state("acme", "demo", "run1", "running")
    assert state.get_item(item.id).state == "LEASED"  # type: ignore[union-attr]
    state.set_run_state("acme", "demo", "run1", "finished")
    assert state.get_item(item.id).state == "FINISHED"  # type: ignore[union-attr]


def test_unknown_entity_and_duplicate_queue_refused() -> None:
    state, _, _ = make_state()
    with pytest.raises(StateError, match="entity nobody not found"):
        state.create_queue("nobody", LAUNCH_PROJECT, "q")
    state.create_queue("acme", LAUNCH_PROJECT, "q")
    with pytest.raises(StateError, match="already exists"):
        state.create_queue("acme", LAUNCH_PROJECT, "q")


def test_agent_names_are_label_safe() -> None:
    state, _, _ = make_state()
    queue = state.create_queue("acme", LAUNCH_PROJECT, "q")
    names = {state.create_agent("acme", LAUNCH_PROJECT, [queue.id], "h", None, None).name for _ in range(20)}
    assert len(names) == 20
    for name in names:
        assert len(name) <= 63 and name.replace("-", "").isalnum() and name == name.lower()


def test_state_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    clock = FakeClock()
    state, alice, _ = make_state(clock, state_file=path)
    queue = state.upsert_queue("acme", LAUNCH_PROJECT, "q", "kubernetes", {"resource_args": {"kubernetes": {"a": 1}}})
    pending = state.push(queue, spec(1))
    claimed = state.push(queue, spec(2))
    state.pop(queue, alice, None)
    state.put_file("acme/model-registry/agent/x.log", b"bytes")

    again = EmulatorState(state_file=path, clock=clock)
    assert again.user_for_key("local-" + "a" * 40) == alice
    queue2 = again.find_queue("acme", LAUNCH_PROJECT, "q")
    assert queue2 is not None and queue2.id == queue.id
    assert [i.id for i in again.queue_items(queue.id)] == [pending.id, claimed.id]
    assert again.get_item(pending.id).state == "CLAIMED"  # type: ignore[union-attr]
    assert again.get_item(pending.id).run_spec["resource_args"] == {"kubernetes": {"a": 1}}  # type: ignore[union-attr]
    assert again.get_file("acme/model-registry/agent/x.log") == b"bytes"
    fresh = again.push(queue2, spec(3))
    assert fresh.id not in (pending.id, claimed.id), "ids keep counting after a restart"


def test_reset_keeps_keys_and_their_entities() -> None:
    state, alice, _ = make_state()
    state.create_queue("acme", LAUNCH_PROJECT, "q")
    state.reset()
    assert state.queues == {}
    assert state.user_for_key("local-" + "a" * 40) == alice
    assert state.get_project("acme", LAUNCH_PROJECT) is not None


def test_deleted_items_are_never_popped_and_claims_expire_after_a_reload(tmp_path: Path) -> None:
    clock = FakeClock()
    path = tmp_path / "state.json"
    state, alice, _ = make_state(clock, state_file=path, claim_timeout=10)
    queue = state.create_queue("acme", LAUNCH_PROJECT, "q")
    gone = state.push(queue, spec(1))
    claimed = state.push(queue, spec(2))
    assert state.delete_item(queue.id, gone.id)
    assert state.pop(queue, alice, None).id == claimed.id  # type: ignore[union-attr]
    again = EmulatorState(state_file=path, clock=clock, claim_timeout=10)
    queue2 = again.find_queue("acme", LAUNCH_PROJECT, "q")
    assert queue2 is not None and again.pop(queue2, alice, None) is None
    clock.now += 11
    returned = again.pop(queue2, alice, None)
    assert returned is not None and returned.id == claimed.id
