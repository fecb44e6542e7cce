"""Fitting ahead for a policy still playing: the work of a replay worker that has no policy left.

A policy that retrains on a schedule (always, every:N) will retrain at known periods on known rows: every
rating batch up to that period. Its fits depend on nothing else (the parameters and the ranking choice are
the base's, fixed for the replay), so a free worker can make them before the policy gets there and leave them
in the replay's shared fit folder (recommender/fit_cache.py); the policy then loads them, and is charged what
they cost. The rows come from the warehouse of a policy that has finished (it holds every batch) and the key
is the rows themselves, so a fit made here is used only if it is exactly the one the policy would make.

The worker fits the target's retrain periods in order, each time the first one at least ``LEAD`` periods past
the one the policy is playing (its ``PERIOD`` file, written as each period starts), and claims the rows while it
fits them: a policy that gets there first waits for that fit instead of making it again. In order, both workers
stay busy to the end; fitting from the last period down (as before) left the policy alone for its last periods,
each still a few seconds of evaluation, lists and publishing, while this worker idled (26 s of a 304 s replay).
"""

from __future__ import annotations

import time

from cinematch.core.log import get_logger, log_event
from cinematch.core.settings import Settings
from cinematch.pipelines.engine import cached_trainer
from cinematch.pipelines.replay import BASE, BASE_BATCH, BASE_DONE, FITS, played, playing, scratch_settings
from cinematch.pipelines.replay_data import ReplayPlan
from cinematch.pipelines.replay_policy import Policy
from cinematch.recommender import registry
from cinematch.recommender.training import params_from_settings, ranking_config, warm_starts
from cinematch.recommender.training_set import ratings_of, stable_split
from cinematch.storage.warehouse import write_session

log = get_logger(__name__)

LEAD = 2  # fit ahead from the period after the policy's next one: that one it would reach before the fit ends


def scheduled(policy: Policy) -> bool:
    """Whether the policy's retrain periods are known before it plays them."""
    return policy.kind in ("always", "every")


def prefetch(settings: Settings, plan: ReplayPlan, policies: list[Policy]) -> int:
    """Fit ahead for each scheduled policy still playing, in order ahead of it; returns the fits made."""
    source = next((plan.policy_home(p.dirname) for p in policies if played(plan.policy_home(p.dirname))), None)
    targets = [p for p in policies if scheduled(p) and not played(plan.policy_home(p.dirname))]
    if source is None or not targets:
        return 0
    base = scratch_settings(settings, plan.folder / BASE)
    choice = registry.load_metadata(base, (plan.folder / BASE / BASE_DONE).read_text().strip())["ranking"]["choice"]
    made = 0
    with write_session(scratch_settings(settings, source), "replay") as con:  # a finished policy: nobody writes it
        for target in targets:
            home = plan.policy_home(target.dirname)
            target_settings = scratch_settings(settings, home)
            params, config = params_from_settings(target_settings), ranking_config(target_settings)
            fits = cached_trainer(target_settings, plan.folder / FITS)
            periods = [p for p in plan.periods if p.path is not None and target.retrains(p.number, False, True)]
            tried: set[int] = set()
            while not played(home):
                ahead = [p for p in periods if p.number >= playing(home) + LEAD and p.number not in tried]
                if not ahead:
                    break
                period = ahead[0]
                tried.add(period.number)
                started = time.perf_counter()
                batches = [
                    BASE_BATCH,
                    *(q.batch_id for q in plan.periods if q.path is not None and q.number <= period.number),
                ]
                train, _ = stable_split(ratings_of(con, batches, with_batch=False))  # as training reads them
                if warm_starts(target_settings, train):  # both refits start from the policy's own champion
                    continue
                if fits.cached(train, params, config, choice):  # another policy made both (every:N for always)
                    continue
                with fits.claim(train):
                    fits.fit_ratings(train, params, None)
                    fits.fit_ranking(train, config, choice, False, None)
                made += 1
                log_event(log, "replay_prefetch", replay_id=plan.replay_id, policy=target.name, period=period.number,
                          playing=playing(home), seconds=round(time.perf_counter() - started, 2))  # fmt: skip
    return made
