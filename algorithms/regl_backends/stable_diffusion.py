"""ReGL's generator as the paper describes it: Stable Diffusion prompted with the class name, training
free, or adapted to each client's own images with LoRA first. Through ``diffusers`` (and ``peft`` for
LoRA), imported only here and only when a run uses this backend (``pip install -e '.[regl]'``).

Weights are read from a local folder in diffusers format (``model_index.json``, ``unet/``, ``vae/``,
``text_encoder/``, ``tokenizer/``, ``scheduler/``); nothing is downloaded. ``weights = "random-tiny"``
builds a random miniature instead (``tiny_diffusion``), to check the path end to end without weights.

Our choices where the description leaves them open: a DDIM sampler (eta 0, so a seed fixes every image)
built from the folder's scheduler config, 25 steps, classifier-free guidance 7.5 against the empty
prompt, prompt "a photo of a {class}" (underscores of class names read as spaces); LoRA of rank r
(alpha = r) on the UNet's attention projections (to_q, to_k, to_v, to_out.0), trained from a fresh
seeded initialisation per client with AdamW on the usual noise-prediction loss (epsilon or v, as the
scheduler predicts), with the client's images captioned by the same prompt, and removed in effect for
the next client by re-initialising it. Generated images go to the dataset's space by
``base.to_dataset_space`` (grey or RGB, resized, 8-bit, normalised).
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
import torch.nn.functional as F

from algorithms.regl_backends.base import class_labels, to_dataset_space, to_pixels
from benchmarks.engine.api import ConfigError, derive_seed, ServerContext, TensorData

RANDOM_TINY = "random-tiny"
ADAPTER = "regl_client"
LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
DTYPES = ("float32", "float16", "bfloat16")


def check_weights(weights: str, lora_rank: int) -> None:
    """One line naming the setting when the weights or the libraries are missing; nothing is loaded."""
    key = "algorithms.regl_diffusers.weights"
    if not weights:
        raise ConfigError(f"{key}: set it to a local Stable Diffusion folder in diffusers format "
                          "(model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/); nothing is "
                          f"downloaded (\"{RANDOM_TINY}\" builds a random miniature, for checks only)")
    if weights != RANDOM_TINY and not (Path(weights).expanduser() / "model_index.json").is_file():
        raise ConfigError(f"{key}: {weights!r} is not a diffusers pipeline folder (no model_index.json in it)")
    for package in ("diffusers", "transformers") + (("peft",) if lora_rank else ()):
        if importlib.util.find_spec(package) is None:
            raise ConfigError(f"{key}: the diffusers backend needs {package}; install the extra: "
                              "pip install -e '.[regl]'")


def load_components(weights: str, dtype: torch.dtype = torch.float32) -> dict:
    """UNet, VAE, text encoder, tokenizer and scheduler config from a local folder (or the miniature), the
    networks in ``dtype``."""
    if weights == RANDOM_TINY:
        from algorithms.regl_backends.tiny_diffusion import tiny_components
        parts = tiny_components()
        for key in ("unet", "vae", "text_encoder"):
            if dtype != torch.float32:
                parts[key] = parts[key].to(dtype)
        return parts
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer
    path = str(Path(weights).expanduser())
    # Loaded in their type (casting afterwards would skip the modules diffusers keeps in float32).
    local = {"local_files_only": True, "torch_dtype": dtype}
    return {"unet": UNet2DConditionModel.from_pretrained(path, subfolder="unet", **local),
            "vae": AutoencoderKL.from_pretrained(path, subfolder="vae", **local),
            "text_encoder": CLIPTextModel.from_pretrained(path, subfolder="text_encoder", **local),
            "tokenizer": CLIPTokenizer.from_pretrained(path, subfolder="tokenizer", local_files_only=True),
            "scheduler_config": DDIMScheduler.load_config(path, subfolder="scheduler", local_files_only=True)}


def add_lora(unet, rank: int) -> list[torch.nn.Parameter]:
    """A LoRA adapter on the UNet's attention projections, the only trainable parameters; returns them."""
    from peft import LoraConfig
    unet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian",
                                target_modules=list(LORA_TARGETS)), adapter_name=ADAPTER)
    params = [p for name, p in unet.named_parameters() if "lora_" in name]
    for p in params:  # trained in float32 whatever the frozen weights' type
        p.data = p.data.float()
        p.requires_grad_(True)
    return params


@torch.no_grad()
def reset_lora(unet, rank: int, generator: torch.Generator) -> None:
    """peft's "gaussian" start, from ``generator``: A ~ N(0, 1/r^2), B = 0, so the adapter starts as a no-op."""
    for name, p in unet.named_parameters():
        if "lora_A" in name:
            p.normal_(0.0, 1.0 / rank, generator=generator)
        elif "lora_B" in name:
            p.zero_()


class StableDiffusionGenerator:
    caches = True  # every image costs inference_steps UNet passes (and LoRA, steps): a resume restores them

    def __init__(self, server: ServerContext, params):
        self.server, self.params = server, params
        self.lora_params: list[torch.nn.Parameter] = []
        self.text_cache: dict[str, torch.Tensor] = {}
        self.last_lora_loss = float("nan")

    # ---- setup ---------------------------------------------------------------------------------
    def prepare(self) -> None:
        from diffusers import DDIMScheduler, DDPMScheduler
        p, device = self.params, self.server.device
        self.dtype = getattr(torch, p.dtype)
        parts = load_components(p.weights, self.dtype)
        self.unet, self.vae, self.text_encoder = parts["unet"], parts["vae"], parts["text_encoder"]
        for module in (self.unet, self.vae, self.text_encoder):
            module.requires_grad_(False)
        self.tokenizer = parts["tokenizer"]
        if p.lora_rank:  # added on the CPU, under a forked seed: the run's random streams stay untouched
            with torch.random.fork_rng(devices=[]):  # peft's own initialisation; reset_lora overwrites it
                torch.manual_seed(derive_seed(self.server.seed, "regl-lora-init"))
                self.lora_params = add_lora(self.unet, p.lora_rank)
        for module in (self.unet, self.vae, self.text_encoder):
            module.to(device)
            module.eval()  # no dropout anywhere, in sampling or in LoRA training
        self.sampler = DDIMScheduler.from_config(parts["scheduler_config"])
        self.noiser = DDPMScheduler.from_config(parts["scheduler_config"])
        self.scale = 2 ** (len(self.vae.config.block_out_channels) - 1)
        self.resolution = p.resolution or self.unet.config.sample_size * self.scale

    def prompt(self, cls: int) -> str:
        names = self.server.class_names
        name = names[cls] if cls < len(names) else f"class {cls}"
        return self.params.prompt.format(name.replace("_", " "))

    @torch.no_grad()
    def text(self, prompt: str) -> torch.Tensor:
        """The text encoder's last hidden states for ``prompt`` (1, tokens, dim), computed once."""
        if prompt not in self.text_cache:
            ids = self.tokenizer([prompt], padding="max_length", max_length=self.tokenizer.model_max_length,
                                 truncation=True, return_tensors="pt").input_ids.to(self.server.device)
            self.text_cache[prompt] = self.text_encoder(ids)[0]
        return self.text_cache[prompt]

    # ---- one client ----------------------------------------------------------------------------
    def generate(self, counts: torch.Tensor, seed: int, local: TensorData) -> TensorData:
        device = self.server.device
        if self.lora_params:
            self.adapt(local, seed)
        gen = torch.Generator(device=device).manual_seed(seed)
        pixels = []
        for cls, wanted in enumerate(counts.tolist()):
            for start in range(0, wanted, self.params.sample_batch_size):
                pixels.append(self.sample(cls, min(self.params.sample_batch_size, wanted - start), gen))
        y = class_labels(counts, device)
        if not pixels:
            return TensorData(torch.zeros(0, *self.server.input_shape, device=device), y)
        x = to_dataset_space(torch.cat(pixels), self.server.input_shape, self.server.mean, self.server.std)
        return TensorData(x, y)

    @torch.no_grad()
    def sample(self, cls: int, n: int, gen: torch.Generator) -> torch.Tensor:
        """``n`` images of class ``cls`` as pixels in [0, 1], (n, 3, resolution, resolution)."""
        p, unet = self.params, self.unet
        cond = self.text(self.prompt(cls)).expand(n, -1, -1)
        guided = p.guidance_scale != 1.0
        context = torch.cat([self.text("").expand(n, -1, -1), cond]) if guided else cond
        side = self.resolution // self.scale
        latents = torch.randn((n, unet.config.in_channels, side, side), generator=gen, device=self.server.device,
                              dtype=self.dtype) * self.sampler.init_noise_sigma
        self.sampler.set_timesteps(p.inference_steps, device=self.server.device)
        for t in self.sampler.timesteps:
            model_in = self.sampler.scale_model_input(torch.cat([latents, latents]) if guided else latents, t)
            eps = unet(model_in, t, encoder_hidden_states=context).sample
            if guided:
                uncond, text = eps.chunk(2)
                eps = uncond + p.guidance_scale * (text - uncond)
            latents = self.sampler.step(eps, t, latents).prev_sample
        images = self.vae.decode(latents / self.vae.config.scaling_factor).sample
        return ((images.float() + 1.0) / 2.0).clamp(0.0, 1.0)

    def adapt(self, local: TensorData, seed: int) -> None:
        """LoRA fine-tuning on the client's own images, captioned with their class prompts."""
        p, device, unet = self.params, self.server.device, self.unet
        gen = torch.Generator(device=device).manual_seed(derive_seed(seed, "lora"))
        picks = torch.Generator(device="cpu").manual_seed(derive_seed(seed, "lora-batches"))
        reset_lora(unet, p.lora_rank, gen)
        if len(local) == 0 or p.lora_steps == 0:
            return
        optimizer = torch.optim.AdamW(self.lora_params, lr=p.lora_lr, weight_decay=0.0)
        steps = self.noiser.config.num_train_timesteps
        for _ in range(p.lora_steps):
            index = torch.randint(len(local), (p.lora_batch_size,), generator=picks).to(local.x.device)
            loss = self.lora_loss(local.x[index], local.y[index], gen, steps)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        self.last_lora_loss = float(loss.detach())

    def lora_loss(self, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator, steps: int) -> torch.Tensor:
        """The denoising loss of one batch of the client's images (normalised as the dataset)."""
        device, dtype = self.server.device, self.dtype
        pixels = to_pixels(x, self.server.mean, self.server.std)
        if pixels.shape[1] == 1:  # grey datasets: the VAE takes RGB
            pixels = pixels.expand(-1, 3, -1, -1)
        pixels = F.interpolate(pixels, size=(self.resolution, self.resolution), mode="bilinear", align_corners=False)
        with torch.no_grad():
            posterior = self.vae.encode((pixels * 2.0 - 1.0).to(device, dtype)).latent_dist
            latents = posterior.sample(generator=gen) * self.vae.config.scaling_factor
            context = torch.cat([self.text(self.prompt(int(c))) for c in y.tolist()])
        noise = torch.randn(latents.shape, generator=gen, device=device, dtype=latents.dtype)
        t = torch.randint(0, steps, (len(x),), generator=gen, device=device)
        noisy = self.noiser.add_noise(latents, noise, t)
        target = noise if self.noiser.config.prediction_type == "epsilon" else self.noiser.get_velocity(latents, noise, t)
        pred = self.unet(noisy, t, encoder_hidden_states=context).sample
        return F.mse_loss(pred.float(), target.float())
