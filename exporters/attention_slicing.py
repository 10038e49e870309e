"""Attention computed a few heads at a time in the exported UNet (``edgeldm export --attention-slice N``).

At 512 px SD's first attention layers see 4 096 tokens: one attention matrix is 4 096^2 floats per head, 1 GiB
for all heads of a batch-2 call, and it is the largest activation of the whole pipeline. Computed ``N`` heads at
a time, only ``N`` of them exist at once. diffusers' ``SlicedAttnProcessor`` does this by slicing the batch x
heads dimension; traced for export, its loop count is fixed by the export batch and the graph breaks at another
batch (OpenVINO refuses the empty slices at batch 1). Here the loop runs over the heads — a constant of the
model — so the batch stays dynamic; the arithmetic is diffusers' own (``Attention.get_attention_scores``, written
as MatMul - Mul - Softmax: :func:`attention_probs`).

:class:`SplitEinsumAttnProcessor` is the Core ML exporter's ``--coreml-attention split_einsum``: every head its own
pair of einsums on a channel slice of the projections, so the graph has no reshape / transpose of the heads into a
separate axis — the form Apple's ml-stable-diffusion converts for the Neural Engine (``SPLIT_EINSUM``). Apple also
rewrites the linear layers as 1x1 convolutions on a (batch, channels, 1, tokens) layout; that part is not done here.
"""

from __future__ import annotations

import contextlib


def attention_probs(attn, query, key):
    """``Attention.get_attention_scores(query, key, None)``'s arithmetic (its upcasts included) as MatMul - Mul -
    Softmax: diffusers' own ``baddbmm`` on an empty tensor becomes, in a static ONNX export, a constant of
    batch x heads x tokens^2 floats per call (6x the whole UNet's file on tiny-random, 1 GB per layer at 512 px)."""
    import torch

    dtype = query.dtype
    if attn.upcast_attention:
        query, key = query.float(), key.float()
    scores = torch.matmul(query, key.transpose(-1, -2)) * attn.scale
    if attn.upcast_softmax:
        scores = scores.float()
    return scores.softmax(dim=-1).to(dtype)


class HeadSlicedAttnProcessor:
    """diffusers' ``AttnProcessor`` with the attention matrices made ``heads_per_slice`` heads at a time."""

    def __init__(self, heads_per_slice: int):
        if heads_per_slice < 1:
            raise ValueError(f"heads_per_slice must be positive, got {heads_per_slice}")
        self.heads_per_slice = heads_per_slice

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *args,
                 **kwargs):
        if attention_mask is not None:  # SD UNets pass none; a mask would need slicing along with the heads
            raise NotImplementedError("head-sliced attention takes no attention mask")
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch_size, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch_size, channel, height * width).transpose(1, 2)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        query = attn.to_q(hidden_states)
        if encoder_hidden_states is None:
            encoder_hidden_states = hidden_states
        elif attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        hidden_states = self.attend(attn, query, attn.to_k(encoder_hidden_states), attn.to_v(encoder_hidden_states))
        hidden_states = attn.to_out[0](hidden_states)
        hidden_states = attn.to_out[1](hidden_states)
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch_size, channel, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor

    def attend(self, attn, query, key, value):
        """Multi-head attention of the projected (batch, tokens, channels) tensors, ``heads_per_slice`` at a time."""
        import torch

        # (batch, heads, tokens, head_dim): a slice of heads is a slice of dimension 1, whatever the batch
        query, key, value = (attn.head_to_batch_dim(t, out_dim=4) for t in (query, key, value))
        head_dim = query.shape[3]
        parts = []
        for start in range(0, attn.heads, self.heads_per_slice):
            stop = min(start + self.heads_per_slice, attn.heads)
            q, k, v = (t[:, start:stop].reshape(-1, t.shape[2], head_dim) for t in (query, key, value))
            probs = attention_probs(attn, q, k)
            parts.append(torch.bmm(probs, v).reshape(-1, stop - start, q.shape[1], head_dim))
        hidden_states = torch.cat(parts, dim=1)
        return attn.batch_to_head_dim(hidden_states.reshape(-1, hidden_states.shape[2], head_dim))


class SplitEinsumAttnProcessor(HeadSlicedAttnProcessor):
    """Attention one head at a time, each head two einsums on its slice of the channels (no head axis)."""

    def __init__(self):
        super().__init__(1)

    def attend(self, attn, query, key, value):
        import torch

        head_dim = query.shape[-1] // attn.heads
        parts = []
        for head in range(attn.heads):
            part = slice(head * head_dim, (head + 1) * head_dim)
            weights = torch.einsum("bqd,bkd->bqk", query[..., part], key[..., part]) * attn.scale
            parts.append(torch.einsum("bqk,bkd->bqd", weights.softmax(dim=-1), value[..., part]))
        return torch.cat(parts, dim=-1)


@contextlib.contextmanager
def swapped_attention(module, processor):
    """Every diffusers model inside ``module`` on ``processor`` for the duration (None: unchanged); restored after."""
    if processor is None:
        yield
        return
    models = [m for m in module.modules() if hasattr(m, "set_attn_processor") and hasattr(m, "attn_processors")]
    saved = [(m, dict(m.attn_processors)) for m in models]
    try:
        for m in models:
            m.set_attn_processor(processor)
        yield
    finally:
        for m, processors in saved:
            m.set_attn_processor(processors)


class MatMulAttnProcessor(HeadSlicedAttnProcessor):
    """All heads at once as MatMul - Mul(scale) - Softmax - MatMul on (batch x heads, tokens, head_dim): diffusers'
    plain arithmetic (:func:`attention_probs`), the form ONNX Runtime's transformer optimizer fuses."""

    def __init__(self):
        super().__init__(1)

    def attend(self, attn, query, key, value):
        import torch

        # (batch x heads, tokens, head_dim), as diffusers' AttnProcessor lays them out
        query, key, value = (attn.head_to_batch_dim(t) for t in (query, key, value))
        return attn.batch_to_head_dim(torch.matmul(attention_probs(attn, query, key), value))
