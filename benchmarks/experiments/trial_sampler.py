"""A study's sampler: Optuna's TPE, its random stream derived from the study seed and the trial's number.

A trial's random draws then depend on its number, never on which worker or which session samples it:
workers sharing a study never draw the same random values (each trial number is handed out once), a
single worker's study is reproducible, and a resumed study does not replay its first samples. What TPE
makes of those draws still depends on the trials finished by then, as with any sampler.
"""
from __future__ import annotations

import optuna
from optuna.samplers import BaseSampler, TPESampler

from benchmarks.core.seeding import derive_seed


class NumberSeededTPE(BaseSampler):
    def __init__(self, seed: int):
        self.seed = seed
        self._tpe = self._for(0)

    def _for(self, number: int) -> TPESampler:
        return TPESampler(seed=derive_seed(self.seed, "tpe", number) % 2 ** 32)

    def before_trial(self, study: optuna.Study, trial) -> None:
        self._tpe = self._for(trial.number)
        self._tpe.before_trial(study, trial)

    def infer_relative_search_space(self, study, trial):
        return self._tpe.infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):
        return self._tpe.sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self._tpe.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study, trial, state, values) -> None:
        self._tpe.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        pass  # the stream is the trial number's, whatever process samples it
