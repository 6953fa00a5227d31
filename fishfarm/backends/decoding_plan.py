"""How a lean decoding call runs the model: a plan resolved once per call (`plan_decoding`) and
passed to each of the call's forward passes.

Each decoder layer runs as two steps: its attention input (input norm; q, k and v; the rotary
embedding) and its MLP (post-attention norm, MLP), around the loop's attention and the layer's
output projection; the final norm and the LM head are one more. The model's own modules do the
work (an expert written into the weights, factored SVF layers and PEFT adapters take effect as in
`generate`), except where an equal, faster form exists:

- the family's RMSNorm, in fp32 and unhooked, runs as one `F.rms_norm` call (the same formula);
- on a CPU in fp32 (`onednn`), a plain linear layer (`plain`) multiplies through oneDNN's kernel
  (`fishfarm.backends.onednn`);
- with `pack` too, the plain layers' current weights are copied into oneDNN's blocked layout for
  the call, q, k and v fused into one product and gate and up into another. In the q, k, v copy
  each q and k head's two rotary halves are interleaved (`interleaved_rotary_order`), so one
  complex multiplication rotates every q and k head of a layer instead of the model's
  `rotate_half`. The copies are made at the call, so an expert written between calls is used.

A layer that is not plain (a PEFT adapter, a factored SVF layer, one with hooks) runs as its
module, its q and k rotated by the family's own rotary function.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from fishfarm.backends import onednn
from fishfarm.backends.families import MODEL_FAMILIES

Tensor = torch.Tensor


def unhooked(module) -> bool:
    """True for a module with no forward replaced on the instance and no hooks."""
    return "forward" not in module.__dict__ and not module._forward_hooks and not module._forward_pre_hooks


def plain(module) -> bool:
    """True for an `nn.Linear` that runs as one: no subclass (a PEFT adapter layer), no forward
    replaced on the instance (SVF's factored layers) and no hooks."""
    return type(module) is torch.nn.Linear and unhooked(module)


def interleaved_rotary_order(q_heads: int, k_heads: int, v_features: int, head_dim: int) -> Tensor:
    """The output order of a fused q, k, v product in which each q and k head's two rotary halves
    are interleaved (features 0, d/2, 1, d/2 + 1, ...), v unchanged. Attention scores are dot
    products over a head's features, which do not depend on their order when q and k share it;
    interleaved pairs let one complex multiplication rotate every q and k head at once."""
    half = head_dim // 2
    within = torch.stack([torch.arange(half), torch.arange(half) + half], dim=1).reshape(-1)
    heads = q_heads + k_heads
    rotated = (torch.arange(heads)[:, None] * head_dim + within).reshape(-1)
    return torch.cat([rotated, heads * head_dim + torch.arange(v_features)])


class Rotary:
    """The rotary embedding at a forward pass's positions: `cos` and `sin` as the model's rotary
    module returns them (rows x t x head dim), and `turns`, the same rotations as complex numbers
    (rows x t x 1 x head dim / 2) for interleaved q and k (made at first use)."""

    def __init__(self, cos: Tensor, sin: Tensor):
        self.cos, self.sin = cos, sin

    @functools.cached_property
    def turns(self) -> Tensor:
        half = self.cos.shape[-1] // 2
        return torch.complex(self.cos[..., :half], self.sin[..., :half]).unsqueeze(2)


class Each:
    """Calls each function on the same input; returns their outputs (unfused products)."""

    def __init__(self, functions: Sequence[Callable]):
        self.functions = tuple(functions)

    def __call__(self, x: Tensor) -> tuple[Tensor, ...]:
        return tuple(f(x) for f in self.functions)


class Normed:
    """`module(norm(x))`: a module behind the norm that feeds it."""

    def __init__(self, norm: Callable, module: Callable):
        self.norm, self.module = norm, module

    def __call__(self, x: Tensor) -> Tensor:
        return self.module(self.norm(x))


class ModuleAttentionInput:
    """A layer's q, k and v (rows x heads x t x head dim) from `projections` (q, k, v) of
    `norm(x)`, q and k rotated by the family's rotary function."""

    def __init__(self, norm: Callable, projections: Sequence[Callable], apply_rotary: Callable, head_dim: int):
        self.norm, self.projections = norm, tuple(projections)
        self.apply_rotary, self.head_dim = apply_rotary, head_dim

    def __call__(self, x: Tensor, rotary: Rotary) -> tuple[Tensor, Tensor, Tensor]:
        h = self.norm(x)
        rows, t = h.shape[:2]
        q, k, v = (f(h).view(rows, t, -1, self.head_dim).transpose(1, 2) for f in self.projections)
        q, k = self.apply_rotary(q, k, rotary.cos, rotary.sin)
        return q, k, v


class PackedAttentionInput:
    """A layer's q, k and v (rows x heads x t x head dim) from one packed product of `norm(x)`,
    each q and k head's rotary halves interleaved (`interleaved_rotary_order`), rotated as complex
    pairs; v as the model computes it."""

    def __init__(self, norm: Callable, attn, *, rows: int, kv_heads: int, head_dim: int):
        order = interleaved_rotary_order(attn.q_proj.out_features // head_dim, kv_heads, attn.v_proj.out_features,
                                         head_dim)
        self.norm, self.kv_heads, self.head_dim = norm, kv_heads, head_dim
        self.packed = onednn.Packed((attn.q_proj, attn.k_proj, attn.v_proj), rows, order)
        self.qk_width = self.packed.sizes[0] + self.packed.sizes[1]

    def __call__(self, x: Tensor, rotary: Rotary) -> tuple[Tensor, Tensor, Tensor]:
        d, kv_heads, width = self.head_dim, self.kv_heads, self.qk_width
        out = self.packed.product(self.norm(x))
        pairs = torch.view_as_complex(out[..., :width].unflatten(-1, (-1, d // 2, 2)))
        qk = torch.view_as_real(pairs * rotary.turns).flatten(-2).transpose(1, 2)  # rows, heads, t, d
        v = out[..., width:].unflatten(-1, (kv_heads, d)).transpose(1, 2)
        return qk[:, :-kv_heads], qk[:, -kv_heads:], v


class GatedMLP:
    """The gated MLP of these families on h = norm(x): down(act(gate(h)) * up(h)), `gate_up`
    returning (gate(h), up(h)) from one packed product or two."""

    def __init__(self, norm: Callable, gate_up: Callable, act: Callable, down: Callable):
        self.norm, self.gate_up, self.act, self.down = norm, gate_up, act, down

    def __call__(self, x: Tensor) -> Tensor:
        gate, up = self.gate_up(self.norm(x))
        return self.down(self.act(gate).mul_(up))


@dataclass(frozen=True, eq=False)
class LayerSteps:
    """How one decoder layer runs in a call: x -> rotated q, k, v (`attention_input`); attention's
    output (rows x t x features) -> its update of x (`attention_output`); x -> the MLP's update of
    x (`mlp`, its norm included)."""
    scaling: float
    attention_input: Callable[[Tensor, Rotary], tuple[Tensor, Tensor, Tensor]]
    attention_output: Callable[[Tensor], Tensor]
    mlp: Callable[[Tensor], Tensor]


@dataclass(frozen=True, eq=False)
class DecodePlan:
    """How the model runs in one decode call: each layer's steps, then `head` (the final norm and
    the LM head) on the last position's hidden state."""
    layers: tuple[LayerSteps, ...]
    head: Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class _Planner:
    """Resolves modules into the call's functions (see the module docstring)."""
    rows: int            # the batch size oneDNN's blocked layout is tuned for
    onednn: bool
    pack: bool
    fp32: bool
    rms_norm: type
    apply_rotary: Callable
    kv_heads: int
    head_dim: int

    def norm(self, module) -> Callable:
        if type(module) is self.rms_norm and self.fp32 and unhooked(module):
            return functools.partial(F.rms_norm, normalized_shape=tuple(module.weight.shape), weight=module.weight,
                                     eps=module.variance_epsilon)
        return module

    def linear(self, module, *, packed: bool = False) -> Callable:
        """With `packed` and `pack`, a plain layer's packed copy; else oneDNN's kernel on a plain
        layer when `onednn` is on; else the module."""
        if packed and self.pack and plain(module):
            return onednn.Packed((module,), self.rows).product
        if self.onednn and plain(module):
            return functools.partial(onednn.linear, weight=module.weight, bias=module.bias)
        return module

    def attention_input(self, layer) -> Callable:
        attn, norm = layer.self_attn, self.norm(layer.input_layernorm)
        projections = (attn.q_proj, attn.k_proj, attn.v_proj)
        if self.pack and all(plain(m) for m in projections):
            return PackedAttentionInput(norm, attn, rows=self.rows, kv_heads=self.kv_heads, head_dim=self.head_dim)
        return ModuleAttentionInput(norm, [self.linear(m) for m in projections], self.apply_rotary, self.head_dim)

    def mlp(self, layer) -> Callable:
        mlp, norm = layer.mlp, self.norm(layer.post_attention_layernorm)
        gated = all(hasattr(mlp, a) for a in ("gate_proj", "up_proj", "down_proj", "act_fn")) and unhooked(mlp)
        if not (self.onednn and gated):
            return Normed(norm, mlp)  # runs as it is
        if self.pack and plain(mlp.gate_proj) and plain(mlp.up_proj):
            gate_up = onednn.Packed((mlp.gate_proj, mlp.up_proj), self.rows)
        else:
            gate_up = Each([self.linear(mlp.gate_proj), self.linear(mlp.up_proj)])
        return GatedMLP(norm, gate_up, mlp.act_fn, self.linear(mlp.down_proj, packed=True))

    def layer(self, layer) -> LayerSteps:
        return LayerSteps(layer.self_attn.scaling, self.attention_input(layer),
                          self.linear(layer.self_attn.o_proj, packed=True), self.mlp(layer))


def plan_decoding(lm, *, rows: int, onednn: bool, pack: bool) -> DecodePlan:
    """Returns how `lm` (an HF causal LM of a family with `lean_decoding`) runs in a decode call of
    `rows` rows, from its modules and weights as they are now.

    Args:
        lm: the causal LM.
        rows: the batch size (oneDNN's blocked layout is tuned for it).
        onednn: multiply plain fp32 linear layers with oneDNN's kernel.
        pack: with `onednn`, copy plain layers' weights into its blocked layout, fused where they
            share an input.
    """
    family = MODEL_FAMILIES[lm.config.model_type]
    modeling = family.modeling()
    body = lm.model
    attn = body.layers[0].self_attn
    planner = _Planner(rows=rows, onednn=onednn, pack=pack and onednn,
                       fp32=body.embed_tokens.weight.dtype == torch.float32,
                       rms_norm=getattr(modeling, family.rms_norm), apply_rotary=modeling.apply_rotary_pos_emb,
                       kv_heads=lm.config.num_key_value_heads, head_dim=attn.head_dim)
    head = Normed(planner.norm(body.norm), planner.linear(lm.get_output_embeddings(), packed=True))
    return DecodePlan(tuple(planner.layer(layer) for layer in body.layers), head)
