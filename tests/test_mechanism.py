"""Each algorithm's mechanism verdict on hand-made diagnostic series: the rules the report's mechanism
table relies on (engaged true, false, or None where there is nothing to judge)."""
from __future__ import annotations

import types

import torch

from algorithms.abavg import ABAvg
from algorithms.dynafed import DynaFed
from algorithms.fedavg import FedAvg
from algorithms.feddf import FedDF
from algorithms.fedgen import FedGen
from algorithms.fedprox import FedProx
from algorithms.scaffold import Scaffold


def _judge(cls, series, num_classes=10):
    algorithm = cls.__new__(cls)  # the verdict reads only the series and the class count
    algorithm.server = types.SimpleNamespace(num_classes=num_classes)
    return algorithm.mechanism(series)


def test_fedavg_is_the_baseline():
    assert _judge(FedAvg, {"train.drift": {1: 2.0}, "train.local_steps": {1: 4.0}})["engaged"] is None


def test_fedprox_needs_a_penalty_of_one_percent_of_the_loss():
    loss = {"train.loss": {1: 1.0, 2: 1.0}, "train.local_steps": {1: 23.0, 2: 23.0}}
    assert _judge(FedProx, {**loss, "server.proximal_penalty": {1: 0.02, 2: 0.02}})["engaged"] is True
    assert _judge(FedProx, {**loss, "server.proximal_penalty": {1: 0.001, 2: 0.001}})["engaged"] is False


def test_feddf_needs_a_teacher_better_than_the_student_in_most_scored_rounds():
    before = {"server.distill_initial_val_accuracy": {r: 0.5 for r in range(1, 11)},
              "server.distill_best_val_accuracy": {r: 0.5 for r in range(1, 11)}}
    good = _judge(FedDF, {**before, "server.distill_teacher_val_accuracy": {5: 0.6, 10: 0.6}})
    bad = _judge(FedDF, {**before, "server.distill_teacher_val_accuracy": {5: 0.4, 10: 0.6}})
    assert good["engaged"] is True and bad["engaged"] is False
    assert "1 of the 2 rounds" in bad["evidence"]
    assert _judge(FedDF, before)["engaged"] is False  # never scored: nothing ran


def test_fedgen_needs_a_probe_trained_on_generated_features_to_reach_twice_chance_on_real_ones():
    def judge(series, held_classes, val_labels=tuple(range(10))):
        algorithm = FedGen.__new__(FedGen)
        val = types.SimpleNamespace(y=torch.tensor(val_labels))
        algorithm.server = types.SimpleNamespace(num_classes=10, val=val)
        algorithm.available_labels = torch.arange(held_classes)
        return algorithm.mechanism(series)

    assert judge({"server.generator_probe_val_accuracy": {1: 0.1, 2: 0.25}}, 10)["engaged"] is True
    assert judge({"server.generator_probe_val_accuracy": {1: 0.9, 2: 0.15}}, 10)["engaged"] is False
    # chance is over the classes the clients hold: 0.25 is only chance when 4 classes are held
    assert judge({"server.generator_probe_val_accuracy": {1: 0.25}}, 4)["engaged"] is False
    # the clients' heads agreeing with the generator is not judged (it is trained to make them agree):
    # without the probe (no validation image of a held class) the verdict is None
    verdict = judge({"server.generator_teacher_accuracy": {1: 1.0}}, 10)
    assert verdict["engaged"] is None
    assert judge({}, 10)["engaged"] is False  # the generator never trained
    # chance counts the held classes the validation split shows: 2 of the 10 held classes here
    assert judge({"server.generator_probe_val_accuracy": {1: 0.9}}, 10, val_labels=(0, 1, 1))["engaged"] is False
    assert judge({"server.generator_probe_val_accuracy": {1: 1.0}}, 10, val_labels=(0, 1, 1))["engaged"] is True


def test_dynafed_needs_a_synthetic_set_that_trains_models_to_twice_chance():
    synthesis = {"server.synthesis_loss_start": {8: 0.99}, "server.synthesis_loss_end": {8: 0.96},
                 "server.label_top_probability": {8: 0.9}, "server.label_distinct_argmax": {8: 9.0}}
    assert _judge(DynaFed, {**synthesis, "server.synthetic_only_val_accuracy": {8: 0.57}})["engaged"] is True
    assert _judge(DynaFed, {**synthesis, "server.synthetic_only_val_accuracy": {8: 0.127}})["engaged"] is False
    assert _judge(DynaFed, synthesis)["engaged"] is None  # quality not measured
    assert _judge(DynaFed, {})["engaged"] is False  # synthesis never ran


def test_scaffold_needs_a_correction_of_five_percent_of_the_update_after_round_one():
    assert _judge(Scaffold, {"server.scaffold_correction_share": {1: 0.0, 2: 0.08, 3: 0.06}})["engaged"] is True
    assert _judge(Scaffold, {"server.scaffold_correction_share": {1: 0.0, 2: 0.01, 3: 0.02}})["engaged"] is False
    assert _judge(Scaffold, {"server.scaffold_correction_share": {1: 0.0}})["engaged"] is False


def test_abavg_needs_weights_that_differ_by_a_tenth_of_the_mean():
    accuracy = {"server.abavg_accuracy_min": {1: 0.3}, "server.abavg_accuracy_max": {1: 0.5}}
    assert _judge(ABAvg, {**accuracy, "server.abavg_weight_spread": {1: 0.5}})["engaged"] is True
    assert _judge(ABAvg, {**accuracy, "server.abavg_weight_spread": {1: 0.02}})["engaged"] is False
    assert _judge(ABAvg, {})["engaged"] is False


def test_fedbe_judges_its_teacher_like_feddf_with_its_final_student():
    from algorithms.fedbe import FedBE
    before = {"server.distill_initial_val_accuracy": {5: 0.5, 10: 0.5},
              "server.distill_final_val_accuracy": {5: 0.55, 10: 0.56}}
    good = _judge(FedBE, {**before, "server.distill_teacher_val_accuracy": {5: 0.6, 10: 0.6}})
    assert good["engaged"] is True and "after 55.5%" in good["evidence"]
    assert _judge(FedBE, {**before, "server.distill_teacher_val_accuracy": {5: 0.4, 10: 0.45}})["engaged"] is False


def test_fedmix_needs_the_shared_means_to_carry_two_percent_of_the_loss():
    from algorithms.fedmix import FedMix, FedMixParams
    algorithm = FedMix.__new__(FedMix)
    algorithm.params = FedMixParams()
    assert algorithm.mechanism({"server.fedmix_mix_share": {1: 0.05, 2: 0.06}})["engaged"] is True
    assert algorithm.mechanism({"server.fedmix_mix_share": {1: 0.001, 2: 0.002}})["engaged"] is False
    assert algorithm.mechanism({})["engaged"] is False
