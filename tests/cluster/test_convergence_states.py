"""Every starting state converges, and no state loses the user's configuration (issue 11).

The states are built the way real systems leave them (tests/support/states.py): our tools or
the original ones (Go migrator, backup.sh, cleaner.sh) ran before, the module recreated or
deleted its CR, the Kyma reconciler installed the legacy component again, a person edited or
deleted ConfigMaps or backups, the backup namespace is Terminating. From each, the chain runs
twice; while it does not end in exit 0, the remedy its message names is carried out (as the
person or the module would) and it runs again. What must hold:
- every run ends in exit 0, or in 1 or 3 with a message that names the object and a remedy
  that, carried out, makes the chain converge;
- a second run of a finished chain writes nothing;
- the configuration is never lost: where it was at the start (the CR, a legacy ConfigMap, a
  backup in a live namespace), it is somewhere safe at the end;
- when every step succeeds, the CR holds the configuration, or it records the legacy
  ConfigMaps it left alone (orphaned); `cleaned` never stands on a CR that is not migrated.

The full product (6,000 states, and 800 more for the four newer dimensions, each with every
history, CR event and set of ConfigMaps) runs on an in-memory apiserver; 64 states that cover
every pair of values of any two dimensions, and states covering each value of the newer ones,
run end to end on the real apiserver.
"""

from __future__ import annotations

import collections
import itertools
import logging
from collections.abc import Iterator

import pytest

from hack.devenv.cluster import Cluster
from tests.support import reports, states


@pytest.fixture
def quiet() -> Iterator[None]:
    """The tools log every decision; thousands of runs would flood the captured output."""
    logging.disable(logging.CRITICAL)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def summary(outcomes: list[states.Outcome]) -> str:
    """How the states end, grouped: the exit codes of each run and the remedies needed."""
    groups: collections.Counter[tuple[str, str, str, str]] = collections.Counter()
    for o in outcomes:
        groups[
            (o.codes(o.first), o.codes(o.second), "; ".join(o.remedies) or "-", o.codes(o.final))
        ] += 1
    return reports.table(
        ["states", "1st run", "2nd run", "remedy carried out", "then"],
        [[str(count), *key] for key, count in groups.most_common()],
    )


def test_every_starting_state_converges_without_loss(quiet: None) -> None:
    every = states.every_state()
    assert len(every) == 6000 + 800  # the six dimensions, and each extra (issue 22)
    outcomes: list[states.Outcome] = []
    failures: list[str] = []
    for state in every:
        env = states.MemoryEnv()
        outcome = states.converge(env, state, env.versions)
        outcomes.append(outcome)
        failures += [f"{state.id}: {problem}" for problem in outcome.problems]
    reports.add(f"convergence: all {len(every)} starting states (in memory)", summary(outcomes))
    assert not failures, "\n".join(failures[:40])


REPRESENTATIVE = states.representative_states(64) + states.representative_extra_states()


def test_the_representative_states_cover_every_pair_of_values() -> None:
    assert len(REPRESENTATIVE) >= 60
    extras = [s for s in REPRESENTATIVE if s.extra != "none"]
    for extra in states.EXTRAS[1:]:
        with_it = [s for s in extras if s.extra == extra]
        assert {s.history for s in with_it} == set(states.HISTORIES), extra
        assert {s.cr for s in with_it} == set(states.CR_EVENTS), extra
        assert {s.configmaps for s in with_it} == set(states.CONFIGMAPS), extra
    dimensions = {
        "history": states.HISTORIES,
        "cr": states.CR_EVENTS,
        "sts": states.STATEFULSETS,
        "configmaps": states.CONFIGMAPS,
        "backups": states.BACKUPS,
        "mappings": states.MAPPINGS,
    }
    for (first, first_values), (second, second_values) in itertools.combinations(
        dimensions.items(), 2
    ):
        covered = {(getattr(s, first), getattr(s, second)) for s in REPRESENTATIVE}
        assert covered == set(itertools.product(first_values, second_values)), (first, second)


def test_representative_states_converge_on_the_real_apiserver(
    cluster: Cluster, quiet: None
) -> None:
    env = states.ClusterEnv(cluster)
    outcomes: list[states.Outcome] = []
    failures: list[str] = []
    for state in REPRESENTATIVE:
        env.reset(state)
        outcome = states.converge(env, state, env.versions)
        outcomes.append(outcome)
        failures += [f"{state.id}: {problem}" for problem in outcome.problems]
    reports.add(
        f"convergence: {len(REPRESENTATIVE)} representative starting states (real apiserver)",
        states.table(outcomes),
    )
    assert not failures, "\n".join(failures)
