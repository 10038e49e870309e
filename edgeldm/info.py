"""``edgeldm info``: what a model is made of, without loading its weights.

Components are built on the meta device from their configs (a user's folder is checked first, from
its safetensors headers), so describing an 860 M-parameter UNet takes about a second and no memory.
"""

from __future__ import annotations

from collections import Counter, defaultdict

from .version import __version__
from .checkpoint import check_checkpoint, pruned_skeleton
from .components import component_class, component_spec, read_json, vae_scale_factor
from .families import FAMILIES, check_family
from .inventory import unet_inventory_with_macs
from .io_spec import added_condition_shapes
from .loading import ensure_offline, resolve_source
from .zoo import get_zoo_entry
from .zoo.build import build_components

INFO_SCHEMA = "edgeldm.info/1"


def describe_model(source: str, *, height: int | None = None, width: int | None = None,
                   allow_pickle: bool = False) -> dict:
    """One JSON-serialisable description of ``source`` (a zoo name or a diffusers folder)."""
    ensure_offline()
    kind, path = resolve_source(source)
    if kind == "preset":
        config_dir = get_zoo_entry(source).folder
        components = build_components(config_dir, device="meta")
        files = {}
    elif kind == "single-file":  # the embedded configs of the architecture its shapes match
        from .single_file import config_folder

        config_dir = config_folder(path, allow_pickle=allow_pickle)
        components = build_components(config_dir, device="meta")
        files = {}
    else:
        checked = check_checkpoint(path, allow_pickle=allow_pickle, inpainting=True, families=tuple(FAMILIES))
        config_dir = path
        tokenizers = {}
        for name in checked.family.tokenizers:
            library, class_name = component_spec(checked.model_index, name)
            tokenizers[name] = component_class(library, class_name).from_pretrained(str(path / name))
        components = build_components(config_dir, device="meta", tokenizers=tokenizers)
        files = checked.components
        pruned = pruned_skeleton(path / "unet")
        if pruned is not None:  # its config.json alone describes the unpruned architecture
            components["unet"] = pruned
    index = read_json(config_dir / "model_index.json")
    family = check_family(source, index["_class_name"], tuple(FAMILIES))

    unet, vae, tokenizer = components["unet"], components["vae"], components["tokenizer"]
    factor = vae_scale_factor(vae.config)
    height = height or unet.config.sample_size * factor
    width = width or unet.config.sample_size * factor
    seq_len = tokenizer.model_max_length

    described = {}
    for name in family.weighted:
        model = components[name]
        n_params = sum(p.numel() for p in model.parameters())
        dtype = str(next(model.parameters()).dtype).replace("torch.", "")
        entry = {"class": type(model).__name__, "parameters": n_params, "dtype": dtype,
                 "weights_bytes": sum(p.numel() * p.element_size() for p in model.parameters())}
        if name in files:
            entry["dtype"] = files[name].dtype or "unknown (pickled weights)"
            entry["size_on_disk"] = files[name].size_bytes
            entry["weight_format"] = files[name].weight_format
        described[name] = entry
    for name in family.tokenizers:
        described[name] = {"class": type(components[name]).__name__, "vocab_size": len(components[name]),
                           "model_max_length": components[name].model_max_length}
    sched = components["scheduler"]
    described["scheduler"] = {"class": type(sched).__name__,
                              **{k: sched.config.get(k) for k in ("num_train_timesteps", "beta_schedule",
                                                                  "prediction_type")}}

    ops, macs = unet_inventory_with_macs(unet, height, width, vae_scale_factor=factor, sequence_length=seq_len)
    added = added_condition_shapes(unet.config)
    return {
        "schema": INFO_SCHEMA,
        "edgeldm_version": __version__,
        "source": str(source),
        "source_kind": kind,
        "pipeline": index["_class_name"],
        "family": family.name,
        "image_size": [height, width],
        "latent_shape": [unet.config.in_channels, height // factor, width // factor],
        "vae_scale_factor": factor,
        "total_parameters": sum(described[n]["parameters"] for n in family.weighted),
        "components": described,
        "unet": {
            "macs_per_step": macs.total,
            "mac_counter": "torch.utils.flop_counter.FlopCounterMode (FLOPs/2), batch 1, no classifier-free guidance"
                           + (", the added text-and-time embedding included" if added else ""),
            "batch": 1,
            "sequence_length": seq_len,
            "operator_counts": dict(Counter(op.type for op in ops)),
            "operators": [op.to_dict() for op in ops],
            # SDXL: the pooled text embedding and the time_ids an app must pass, and what embedding them costs
            "added_conditions": {**added, "macs": macs.per_module.get("add_embedding", 0)} if added else None,
        },
    }


def _human(n: float, unit: str = "") -> str:
    for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {suffix}{unit}"
    return f"{n:.0f} {unit}".rstrip()


def _bytes(n: int | None) -> str:
    if n is None:
        return "-"
    for scale, suffix in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if n >= scale:
            return f"{n / scale:.1f} {suffix}"
    return f"{n} B"


def render_info(info: dict, *, list_operators: bool = False, console=None) -> None:
    """Print ``info`` as rich tables."""
    from rich.console import Console
    from rich.table import Table

    # off a terminal rich assumes 80 columns and would cut operator names; logs and pipes want them whole
    console = console or Console()
    if not console.is_terminal:
        console.width = max(console.width, 160)
    h, w = info["image_size"]
    console.print(f"[bold]{info['source']}[/] ({info['source_kind']}): {info['pipeline']}, "
                  f"{h}x{w} px, latents {tuple(info['latent_shape'])}, "
                  f"{_human(info['total_parameters'])} parameters")
    table = Table(title="components")
    for col in ("component", "class", "parameters", "dtype", "on disk"):
        table.add_column(col, justify="right" if col in ("parameters", "on disk") else "left")
    for name, c in info["components"].items():
        if "parameters" in c:
            table.add_row(name, c["class"], f"{c['parameters']:,}", c["dtype"], _bytes(c.get("size_on_disk")))
        elif name.startswith("tokenizer"):
            table.add_row(name, c["class"], f"vocab {c['vocab_size']:,}", f"max len {c['model_max_length']}", "")
        else:
            table.add_row(name, c["class"], "", c.get("prediction_type") or "", "")
    console.print(table)
    unet = info["unet"]
    console.print(f"UNet: [bold]{_human(unet['macs_per_step'], 'MACs')}[/] per denoising step "
                  f"(batch 1; classifier-free guidance doubles it)")
    added = unet.get("added_conditions")
    if added:
        console.print(f"added conditions: pooled text embedding ({added['text_embeds']}) and {added['time_ids']} "
                      f"time_ids, embedded in {_human(added['macs'], 'MACs')}")
    by_type: dict[str, list] = defaultdict(list)
    for op in unet["operators"]:
        by_type[op["type"]].append(op)
    summary = Table(title="UNet operator inventory (what pruning works on)")
    for col in ("type", "count", "parameters", "MACs / step", "share of MACs"):
        summary.add_column(col, justify="left" if col == "type" else "right")
    for op_type, ops in by_type.items():
        summary.add_row(op_type, str(len(ops)), _human(sum(o["parameters"] for o in ops)),
                        _human(sum(o["macs"] for o in ops)), f"{100 * sum(o['mac_share'] for o in ops):.1f} %")
    console.print(summary)
    if list_operators:
        full = Table(title="operators")
        for col in ("name", "type", "parameters", "MACs", "share"):
            full.add_column(col, justify="left" if col in ("name", "type") else "right")
        for op in unet["operators"]:
            full.add_row(op["name"], op["type"], f"{op['parameters']:,}", _human(op["macs"]),
                         f"{100 * op['mac_share']:.2f} %")
        console.print(full)
    else:
        console.print("(nested types overlap: a transformer contains its blocks, attentions and feed-forward; "
                      "--operators lists every one)")


__all__ = ["describe_model", "render_info", "INFO_SCHEMA"]
