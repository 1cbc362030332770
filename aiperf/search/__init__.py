"""Search: network-morphism Bayesian optimisation, TPE hyperparameters, epoch schedule, reward prediction.

The search reads the experiment's history (a replay of :mod:`aiperf.events`) and proposes the next trial::

    spec = load_dataset_spec("digits")
    history = SearchState()
    for event in events:
        history.apply(event)
    searcher = Searcher(spec, seed=0)
    proposal = searcher.propose(history, trial_id="w000-3")
    sink.emit(proposal.to_event())

Optuna and scipy are imported only when a searcher needs them, so replaying a history stays light.
"""

from __future__ import annotations

from aiperf.search._bo import BOConfig
from aiperf.search._history import SearchState, TrialRecord, TrialState
from aiperf.search._kernel import ArchFeatures, arch_distances, features_from_graph, features_from_json
from aiperf.search._logical import LogicalHistory, WaitResult, split_trial_id
from aiperf.search._reward import (
    LogCurveFit,
    epochs_without_improvement,
    fit_log_curve,
    predict_final_accuracy,
    should_stop_early,
    trial_reward,
)
from aiperf.search._searcher import Proposal, Searcher, worker_index
from aiperf.search._space import (
    HYPERPARAMETERS,
    PRECISIONS,
    Budget,
    DatasetSpec,
    ParamSpec,
    Rules,
    Schedule,
    SearchSpace,
    SeedSpec,
    available_datasets,
    load_dataset_spec,
    parse_dataset_spec,
)

__all__ = [
    # history
    "SearchState",
    "TrialRecord",
    "TrialState",
    "LogicalHistory",
    "WaitResult",
    "split_trial_id",
    # dataset specifications
    "DatasetSpec",
    "load_dataset_spec",
    "parse_dataset_spec",
    "available_datasets",
    "SearchSpace",
    "ParamSpec",
    "Schedule",
    "Budget",
    "SeedSpec",
    "Rules",
    "HYPERPARAMETERS",
    "PRECISIONS",
    # proposals
    "Searcher",
    "Proposal",
    "BOConfig",
    "worker_index",
    # rewards and early stopping
    "trial_reward",
    "predict_final_accuracy",
    "fit_log_curve",
    "LogCurveFit",
    "should_stop_early",
    "epochs_without_improvement",
    # architecture distance
    "ArchFeatures",
    "arch_distances",
    "features_from_graph",
    "features_from_json",
]
