"""TPE over the search space, replaying the history into an Optuna study."""

from __future__ import annotations

import random
from typing import Any

from sim_search import synthetic_events

from aiperf.search import SearchState, load_dataset_spec, parse_dataset_spec
from aiperf.search._tpe import HyperparameterSearch, startup_trials


def _history_with_hparams(n: int, seed: int, running: int = 0) -> SearchState:
    spec = load_dataset_spec("digits")
    rng = random.Random(seed)
    h = SearchState()
    for event in synthetic_events(spec, finished=n, running=running, seed=seed):
        if event["type"] == "proposal":
            event["hparams"] = {
                "learning_rate": 10 ** rng.uniform(-2, -0.53),
                "batch_size": rng.choice([32, 64, 128]),
                "dropout": rng.uniform(0, 0.3),
                "kernel_size": rng.choice([3, 5]),
                "weight_decay": 10 ** rng.uniform(-5, -3),
            }
        if event["type"] == "trial_end" and event["status"] == "finished":
            # reward prefers a learning rate near 0.1 and small dropout
            hp = h[event["trial"]].hparams
            event["reward"] = 0.9 - abs(hp["learning_rate"] - 0.1) - 0.3 * hp["dropout"]
        h.apply(event)
    return h


def test_suggestions_stay_inside_the_space() -> None:
    for name in ("digits", "cifar10", "imagenet", "synthetic"):
        spec = load_dataset_spec(name)
        tpe = HyperparameterSearch(spec.space)
        tpe.sync(_history_with_hparams(30, 1))
        for s in range(40):
            hp = tpe.suggest(seed=s)
            assert spec.space.contains(hp), (name, hp, spec.space.problems(hp))
            assert set(hp) == set(spec.space.names)


def test_int_ranges_and_steps_are_respected() -> None:
    data = {
        "dataset": "custom",
        "version": 1,
        "space": {
            "learning_rate": {"type": "float", "low": 0.001, "high": 0.01, "step": 0.001},
            "batch_size": {"type": "int", "low": 16, "high": 256, "log": True},
            "dropout": {"type": "float", "low": 0.0, "high": 0.0},
            "kernel_size": {"type": "int", "low": 1, "high": 7, "step": 2},
        },
        "defaults": {"learning_rate": 0.005, "batch_size": 64, "dropout": 0.0, "kernel_size": 3},
        "schedule": {"round_epochs": [1], "trials_per_round": 1, "patience": [1]},
        "seeds": [{"name": "resnet-tiny"}],
        "limits": {},
        "rules": {
            "official": False,
            "top1_threshold": 0.5,
            "min_duration_s": 1,
            "train_images": 10,
            "eval_images": 10,
            "input_shape": [1, 8, 8],
            "num_classes": 10,
        },
    }
    spec = parse_dataset_spec(data)
    tpe = HyperparameterSearch(spec.space, n_startup_trials=2)
    tpe.sync(SearchState())
    for s in range(30):
        hp = tpe.suggest(seed=s)
        assert spec.space.contains(hp), hp
        assert hp["kernel_size"] in (1, 3, 5, 7) and hp["dropout"] == 0.0


def test_same_history_and_seed_give_the_same_suggestion_incremental_or_not() -> None:
    spec = load_dataset_spec("digits")
    history = _history_with_hparams(25, 2, running=3)
    events_later = _history_with_hparams(40, 2, running=3)
    incremental = HyperparameterSearch(spec.space)
    incremental.sync(history)
    first = incremental.suggest(seed=7)
    assert incremental.suggest(seed=7) == first  # asking does not change the study
    fresh = HyperparameterSearch(spec.space)
    fresh.sync(history)
    assert fresh.suggest(seed=7) == first
    assert incremental.suggest(seed=8) != first
    incremental.sync(events_later)  # another history object: rebuilt, not mixed
    fresh = HyperparameterSearch(spec.space)
    fresh.sync(events_later)
    assert incremental.suggest(seed=3) == fresh.suggest(seed=3)


def test_running_trials_are_in_the_study_and_finish_in_place() -> None:
    spec = load_dataset_spec("digits")
    h = _history_with_hparams(12, 3, running=2)
    tpe = HyperparameterSearch(spec.space)
    tpe.sync(h)
    assert tpe.n_trials == 14
    assert tpe.trial_states() == {"COMPLETE": 12, "RUNNING": 2}
    running = [r.trial_id for r in h.running()]
    h.apply({"type": "trial_end", "trial": running[0], "status": "finished", "reward": 0.9})
    h.apply({"type": "trial_end", "trial": running[1], "status": "failed", "reward": None})
    tpe.sync(h)
    assert tpe.n_trials == 14
    assert tpe.trial_states() == {"COMPLETE": 13, "FAIL": 1}


def test_tpe_learns_from_the_history() -> None:
    spec = load_dataset_spec("digits")
    tpe = HyperparameterSearch(spec.space)
    tpe.sync(_history_with_hparams(60, 4))
    dropouts = [tpe.suggest(seed=s)["dropout"] for s in range(40)]
    assert sum(dropouts) / len(dropouts) < 0.12  # the reward prefers small dropout (uniform mean: 0.15)


def test_fixed_values_are_kept_and_foreign_hparams_are_left_out() -> None:
    spec = load_dataset_spec("digits")
    h = _history_with_hparams(15, 5)
    h.apply(
        {**next(iter(synthetic_events(spec, finished=1, seed=9))), "trial": "odd-0", "hparams": {"learning_rate": 5.0}}
    )
    tpe = HyperparameterSearch(spec.space)
    tpe.sync(h)
    assert tpe.excluded == 1 and tpe.n_trials == 15
    hp = tpe.suggest(seed=1, fixed={"batch_size": 128, "kernel_size": 5, "dropout": 0.9})
    assert hp["batch_size"] == 128 and hp["kernel_size"] == 5
    assert hp["dropout"] != 0.9 and spec.space.contains(hp)  # an invalid fixed value is not kept


def _history_at_one_point(n: int, point: dict[str, Any]) -> SearchState:
    """``n`` finished trials that all trained with ``point`` (the inherited warm-up), rewards differing."""
    spec = load_dataset_spec("digits")
    h = SearchState()
    for i, event in enumerate(synthetic_events(spec, finished=n, seed=6)):
        if event["type"] == "proposal":
            event["hparams"] = dict(point)
        if event["type"] == "trial_end":
            event["reward"] = 0.5 + 0.01 * i
        h.apply(event)
    return h


def test_the_random_start_is_matched_to_the_space() -> None:
    digits = load_dataset_spec("digits").space
    imagenet = load_dataset_spec("imagenet").space
    # digits and ImageNet differ in one thing: ImageNet's batch size has four choices to digits' three
    assert [p.name for p in digits] == [p.name for p in imagenet]
    assert len(imagenet["batch_size"].choices or ()) == len(digits["batch_size"].choices or ()) + 1
    assert startup_trials(imagenet) == startup_trials(digits) + 2
    assert HyperparameterSearch(digits).n_startup_trials == startup_trials(digits)
    assert HyperparameterSearch(digits, n_startup_trials=3).n_startup_trials == 3


def test_trials_that_repeat_one_point_do_not_end_the_random_start() -> None:
    spec = load_dataset_spec("digits")
    n = 3 * startup_trials(spec.space)  # far more finished trials than the start asks for, all at the defaults
    h = _history_at_one_point(n, dict(spec.defaults))
    tpe = HyperparameterSearch(spec.space)
    tpe.sync(h)
    assert tpe.trial_states() == {"COMPLETE": n} and tpe.repeats == n - 1
    # still sampling at random: exactly what a search that never leaves its random start suggests
    never = HyperparameterSearch(spec.space, n_startup_trials=10**6)
    never.sync(h)
    assert [tpe.suggest(seed=s) for s in range(5)] == [never.suggest(seed=s) for s in range(5)]
    # distinct points do count: the same number of trials spread over the space ends the random start
    spread = HyperparameterSearch(spec.space)
    spread.sync(_history_with_hparams(n, 4))
    assert spread.repeats == 0
    assert [spread.suggest(seed=s) for s in range(5)] != [never.suggest(seed=s) for s in range(5)]
