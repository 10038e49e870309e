"""Flat-signature torch modules around pipeline components: one tensor in per declared input, a tuple out.

Exporters (ONNX, OpenVINO, Core ML) and validation all call these, so every backend is compared
against exactly the computation it was exported from.
"""

from __future__ import annotations

import torch


class TextEncoderModule(torch.nn.Module):
    def __init__(self, text_encoder):
        super().__init__()
        self.text_encoder = text_encoder

    def forward(self, input_ids):
        out = self.text_encoder(input_ids=input_ids, return_dict=True)
        return out.last_hidden_state, out.pooler_output


class UNetModule(torch.nn.Module):
    def __init__(self, unet):
        super().__init__()
        self.unet = unet

    def forward(self, sample, timestep, encoder_hidden_states, timestep_cond=None):
        return (self.unet(sample, timestep, encoder_hidden_states=encoder_hidden_states,
                          timestep_cond=timestep_cond, return_dict=False)[0],)


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


def component_module(pipe, component: str) -> torch.nn.Module:
    modules = {
        "text_encoder": lambda: TextEncoderModule(pipe.text_encoder),
        "unet": lambda: UNetModule(pipe.unet),
        "vae_decoder": lambda: VaeDecoderModule(pipe.vae),
        "vae_encoder": lambda: VaeEncoderModule(pipe.vae),
    }
    if component not in modules:
        raise KeyError(f"unknown component {component!r}; known: {', '.join(modules)}")
    return modules[component]().eval()
