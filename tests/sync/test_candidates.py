"""An agent plans only over the files that may have work (planner.may_have_work), kept
from cycle to cycle: that set must hold every file the full plan gives work."""

from __future__ import annotations

from damas_core.sync.planner import may_have_work, plan
from hypothesis import given, settings
from hypothesis import strategies as st

SITES = ["paris", "tokyo", "lyon"]
VOLS = [{"name": s, "url": f"file:///{s}/"} for s in SITES]
times = st.sampled_from([None, 1, 5, 9])


@st.composite
def elements(draw):
    el = {
        "_id": "/f",
        "origin": draw(st.sampled_from(SITES)),
        "time": draw(st.sampled_from([1, 5, 9])),
    }
    for s in SITES:
        for prefix in ("synced_", "modified_"):
            t = draw(times)
            if t is not None:
                el[prefix + s] = t
        if draw(st.booleans()):
            el[f"sync_{s}"] = draw(st.booleans())
        if draw(st.integers(0, 5)) == 0:
            el[f"syncWait_{s}"] = "locked by bo"
        if draw(st.integers(0, 5)) == 0:
            el[f"conflict_{s}"] = {
                "time": 1,
                "from": s,
                "incoming": draw(st.sampled_from([None, "/f.c"])),
            }
        if draw(st.integers(0, 5)) == 0:
            el[f"syncError_{s}"] = 23
            el[f"syncLastAttempt_{s}"] = 0
    if draw(st.integers(0, 4)) == 0:
        el["deleted"] = True
    if draw(st.integers(0, 4)) == 0:
        el["lock"] = "bo"
    if draw(st.booleans()):
        el["syncEverywhere"] = draw(st.booleans())
    return el


@settings(max_examples=400, deadline=None)
@given(elements(), st.sampled_from(SITES), st.booleans(), st.sets(st.sampled_from(SITES)))
def test_every_file_the_plan_gives_work_is_a_candidate(el, site, everywhere, alive):
    params = {"syncEverywhere": everywhere, "retryDelay": 0}
    the_plan = plan({"/f": el}, site, VOLS, params, now=10**12, alive=alive | {site})
    work = bool(the_plan.receptions or the_plan.emissions or the_plan.waiting)
    if work:
        assert may_have_work(el, site, SITES, params), the_plan
