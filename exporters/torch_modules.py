"""Flat-signature torch modules around pipeline components: one tensor in per declared input, a tuple out.

Exporters (ONNX, OpenVINO, Core ML) and validation all call these, so every backend is compared
against exactly the computation it was exported from.
"""

from __future__ import annotations

import torch


class TextEncoderModule(torch.nn.Module):
    """A CLIP text encoder returning the outputs its I/O declares, by name (``io_spec.text_encoder_io``):
    ``last_hidden_state``, ``pooler_output`` or — with a projection — ``text_embeds``, and ``hidden_states.i``."""

    def __init__(self, text_encoder, outputs=("last_hidden_state", "pooler_output")):
        super().__init__()
        self.text_encoder = text_encoder
        self.outputs = tuple(outputs)
        self.hidden_states = any(name.startswith("hidden_states.") for name in self.outputs)

    def forward(self, input_ids):
        out = self.text_encoder(input_ids=input_ids, output_hidden_states=self.hidden_states, return_dict=True)
        return tuple(out.hidden_states[int(name.split(".")[1])] if name.startswith("hidden_states.") else out[name]
                     for name in self.outputs)


class UNetModule(torch.nn.Module):
    """The UNet with flat inputs in the order of its I/O: the added conditions (SDXL's ``text_embeds`` and
    ``time_ids``) and LCM's ``timestep_cond`` follow ``encoder_hidden_states`` when the UNet takes them."""

    def __init__(self, unet, inputs=None):
        super().__init__()
        self.unet = unet
        if inputs is None:  # what the UNet's config says it takes, in its declared I/O's order (sizes do not matter)
            from ..io_spec import unet_io

            inputs = unet_io(unet.config, latent_height=1, latent_width=1).input_names
        self.extra = tuple(inputs)[3:]

    def forward(self, sample, timestep, encoder_hidden_states, *extra):
        given = dict(zip(self.extra, extra))
        added = {name: given.pop(name) for name in ("text_embeds", "time_ids") if name in given}
        return (self.unet(sample, timestep, encoder_hidden_states=encoder_hidden_states,
                          timestep_cond=given.pop("timestep_cond", None), added_cond_kwargs=added or None,
                          return_dict=False)[0],)


class VaeDecoderModule(torch.nn.Module):
    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, latent_sample):
        return (self.vae.decode(latent_sample, return_dict=False)[0],)


class VaeEncoderModule(torch.nn.Module):
    """Returns the posterior's parameters (mean and log-variance stacked), as optimum's export does."""

    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, sample):
        h = self.vae.encoder(sample)
        if self.vae.quant_conv is not None:
            h = self.vae.quant_conv(h)
        return (h,)


def component_module(pipe, component: str, io=None) -> torch.nn.Module:
    """The flat module of ``component``; ``io`` (its ``ComponentIO``) picks the inputs and outputs it serves,
    the SD 1.x defaults without it."""
    def text_encoder(name):
        return lambda: TextEncoderModule(getattr(pipe, name), *([io.output_names] if io else []))

    modules = {
        "text_encoder": text_encoder("text_encoder"),
        "text_encoder_2": text_encoder("text_encoder_2"),
        "unet": lambda: UNetModule(pipe.unet, *([io.input_names] if io else [])),
        "vae_decoder": lambda: VaeDecoderModule(pipe.vae),
        "vae_encoder": lambda: VaeEncoderModule(pipe.vae),
    }
    if component not in modules:
        raise KeyError(f"unknown component {component!r}; known: {', '.join(modules)}")
    return modules[component]().eval()
