"""ReGL's Stable Diffusion backend on a random miniature built from config (nothing downloaded): only LoRA
weights learn, a seed fixes the images, images arrive in the dataset's shape and normalisation, one
client's adaptation never leaks into the next, weights load from a local diffusers folder, and a run
without weights is refused with one line naming the setting."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("peft")

from algorithms.regl import ReGLDiffusersParams  # noqa: E402
from algorithms.regl_backends.stable_diffusion import (RANDOM_TINY, StableDiffusionGenerator,  # noqa: E402
                                                       load_components)
from benchmarks.engine.api import ConfigError, ServerContext, TensorData  # noqa: E402
from benchmarks.experiments.config import config_from_dict  # noqa: E402

FMNIST_SHAPE, CIFAR_SHAPE = (1, 28, 28), (3, 32, 32)
PARAMS = ReGLDiffusersParams(weights=RANDOM_TINY, inference_steps=2, lora_rank=2, lora_steps=2, lora_batch_size=2,
                             sample_batch_size=4)


def _server(shape, mean, std) -> ServerContext:
    return ServerContext(aggregation="uniform", clients=None, eval_batch_size=100, rounds=1, num_classes=3,
                         input_shape=shape, device=torch.device("cpu"), val=None, proxy=None,
                         client_class_counts=None, build_model=None, seed=0, mean=mean, std=std,
                         class_names=("T-shirt/top", "trouser", "ankle_boot"))


def _local(shape, n=6) -> TensorData:
    gen = torch.Generator().manual_seed(3)
    return TensorData(torch.randn(n, *shape, generator=gen), torch.arange(n) % 3)


@pytest.fixture(scope="module")
def fmnist_generator():
    gen = StableDiffusionGenerator(_server(FMNIST_SHAPE, (0.1307,), (0.3081,)), PARAMS)
    gen.prepare()
    return gen


def test_only_lora_weights_receive_gradients(fmnist_generator):
    gen = fmnist_generator
    local = _local(FMNIST_SHAPE)
    for p in gen.unet.parameters():
        p.grad = None
    loss = gen.lora_loss(local.x[:2], local.y[:2], torch.Generator().manual_seed(0), 1000)
    loss.backward()
    named = dict(gen.unet.named_parameters())
    with_grad = {name for name, p in named.items() if p.grad is not None}
    assert with_grad and all("lora_" in name for name in with_grad)
    assert with_grad == {name for name, p in named.items() if p.requires_grad}
    assert any(named[n].grad.abs().sum() > 0 for n in with_grad if "lora_B" in n)  # B starts at 0, A's grad too
    for module in (gen.vae, gen.text_encoder):
        assert not any(p.requires_grad for p in module.parameters())
    for p in gen.unet.parameters():
        p.grad = None


def test_a_seed_fixes_the_images_and_adaptation_does_not_leak_between_clients(fmnist_generator):
    gen = fmnist_generator
    counts = torch.tensor([2, 0, 1])
    first = gen.generate(counts, 11, _local(FMNIST_SHAPE))
    other_client = gen.generate(counts, 12, _local(FMNIST_SHAPE, n=4))
    again = gen.generate(counts, 11, _local(FMNIST_SHAPE))
    assert torch.equal(first.x, again.x) and first.y.tolist() == [0, 0, 2]
    assert not torch.equal(first.x, other_client.x)


@pytest.mark.parametrize("shape, mean, std", [(FMNIST_SHAPE, (0.1307,), (0.3081,)),
                                              (CIFAR_SHAPE, (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))])
def test_images_come_out_in_the_dataset_shape_and_normalisation(shape, mean, std):
    params = replace(PARAMS, lora_rank=0)  # training-free
    gen = StableDiffusionGenerator(_server(shape, mean, std), params)
    gen.prepare()
    made = gen.generate(torch.tensor([1, 2, 0]), 5, _local(shape))
    assert made.x.shape == (3, *shape) and made.x.dtype == torch.float32 and made.y.tolist() == [0, 1, 1]
    m, s = torch.tensor(mean).view(1, -1, 1, 1), torch.tensor(std).view(1, -1, 1, 1)
    pixels = made.x * s + m
    assert pixels.min() >= -1e-5 and pixels.max() <= 1 + 1e-5
    assert torch.allclose(pixels * 255, (pixels * 255).round(), atol=1e-3)


def test_weights_load_from_a_local_diffusers_folder(tmp_path):
    from diffusers import DDIMScheduler
    parts = load_components(RANDOM_TINY)
    for key in ("unet", "vae", "text_encoder", "tokenizer"):
        parts[key].save_pretrained(tmp_path / key)
    DDIMScheduler.from_config(parts["scheduler_config"]).save_pretrained(tmp_path / "scheduler")
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    loaded = load_components(str(tmp_path))
    for key in ("unet", "vae", "text_encoder"):
        for a, b in zip(parts[key].state_dict().values(), loaded[key].state_dict().values()):
            assert torch.equal(a, b)
    prompt = ["a photo of a trouser"]
    assert torch.equal(parts["tokenizer"](prompt, return_tensors="pt").input_ids,
                       loaded["tokenizer"](prompt, return_tensors="pt").input_ids)
    cfg = config_from_dict({"algorithm": "regl_diffusers", "dataset": {"name": "synthetic"},
                            "algorithms": {"regl_diffusers": {"weights": str(tmp_path)}}})
    assert cfg.hparams.weights == str(tmp_path)


def test_a_run_without_weights_is_refused_in_one_line_naming_the_setting(tiny, tmp_path):
    with pytest.raises(ConfigError, match=r"^algorithms\.regl_diffusers\.weights: set it to a local") as err:
        config_from_dict(tiny(algorithm="regl_diffusers"))
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match=r"^algorithms\.regl_diffusers\.weights: .*\(no model_index\.json"):
        config_from_dict(tiny(algorithm="regl_diffusers", algorithms={"regl_diffusers": {"weights": str(tmp_path)}}))
