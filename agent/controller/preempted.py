"""A run whose pod was taken away (evicted, preempted) goes back on its queue once, as the same run
resumed, up to LAUNCH_AGENT_MAX_RESUMES; what was sent is written on the workload before and after
the push, so a lost answer never pushes it twice."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agent.controller import ledger
from agent.controller.reports import RetryLater, resume_count, resume_spec
from agent.controller.status import FAILED
from agent.kube.client import ResourceType
from agent.manifest import ANN_ITEM_ID, ANN_QUEUE, ANN_RUN_ID

if TYPE_CHECKING:
    from agent.controller.reconcile import Reconciler


async def requeue(rec: Reconciler, rt: ResourceType, obj: dict[str, Any], disruption: str) -> None:
    """A preempted run goes back on its queue once, as the same run (resumed), up to the cap."""
    a = rec.a
    ann = ledger.annotations(obj)
    item_id, queue, run_id = ann[ANN_ITEM_ID], ann.get(ANN_QUEUE, ""), ann.get(ANN_RUN_ID, "")
    spec = ledger.run_spec_of(obj)
    cap = a.s.max_resumes
    base = {ledger.DISRUPTED: disruption}
    pending = ann.get(ledger.REQUEUE, "")
    if pending == "sending":  # an earlier push whose answer never came: never pushed twice
        await a.reporter.warn(item_id, f"run {run_id} was preempted ({disruption}); its requeue may not have "
                              f"reached W&B: check queue {queue}")
        await rec.write(rt, obj, {**base, ledger.REPORTED: "requeued", ledger.REQUEUE: "unconfirmed"},
                        release=rec.may_release(ann, "requeued"))
        return
    count = resume_count(spec or {})
    if spec is None or count >= cap:
        why = (f"it has been resumed {count} times already, the limit (LAUNCH_AGENT_MAX_RESUMES={cap})"
               if spec is not None else "its run spec was too large to keep on the workload")
        message = f"run {run_id} was preempted ({disruption}) and is not requeued: {why}"
        if not await a.reporter.fail(item_id, queue, message, "run", check_first=True):
            raise RetryLater()
        await rec.write(rt, obj, {**base, ledger.REPORTED: FAILED}, release=True)
        rec.count(queue, FAILED)
        return
    written = await rec.write(rt, obj, {**base, ledger.REQUEUE: "sending"})
    outcome = await a.reporter.requeue(queue, resume_spec(spec, run_id), item_id)
    if not outcome.done:
        await rec.write(rt, written or obj, {ledger.REQUEUE: None})
        raise RetryLater()
    new_id = outcome.value or "unconfirmed"
    rec.log.info("run %s was preempted (%s); requeued as item %s (resume %d of %d)", run_id, disruption,
                 new_id, count + 1, cap)
    await a.reporter.warn(item_id, f"run {run_id} was preempted ({disruption}); requeued on {queue} as item "
                          f"{new_id} (resume {count + 1} of {cap})")
    await rec.write(rt, written or obj, {ledger.REPORTED: "requeued", ledger.REQUEUE: new_id},
                    release=rec.may_release(ann, "requeued"))
    rec.count(queue, "requeued")
