"""Exploring experts: what each one did to the singular values, how alike they are, what a mixture answers.

Every view reads the *scale* an expert applies to σ (`Expert.scales`), so "direct" and "sigmoid"
experts read the same way: a scale of 1 is the base model. Two units are offered:
- "scale − 1": the relative change of each singular value (what z itself says);
- "Δσ / σ₁": the absolute change σ_i·(scale_i − 1), relative to the matrix's largest singular
  value: how much each component moved the matrix (the top components dominate, as σ does).

The functions return arrays or figures, so a headless run saves the same views as PNG;
`ExpertExplorer` wraps them in ipywidgets for notebook 07.
"""
from __future__ import annotations

import dataclasses
from typing import Mapping

import matplotlib.pyplot as plt
import numpy as np
import torch

from t2lib import plots
from t2lib.cem import mix_experts
from t2lib.experts import Expert, identity_value
from t2lib.svd import Decomposition, module_types, parse_target
from t2lib.svf import SVFModel

UNITS = ("scale − 1", "Δσ / σ₁")


def _names_by_layer(decomp: Decomposition, module: str) -> list[str]:
    names = sorted((parse_target(n)[0], n) for n in decomp if parse_target(n)[1] == module)
    if not names:
        raise ValueError(f"no target matrix of type {module!r}; the decomposition has {module_types(decomp)}")
    return [n for _, n in names]


def _scales(expert: Expert, decomp: Decomposition) -> dict[str, torch.Tensor]:
    """Returns target name -> scale for every target (1 where the expert does not cover it)."""
    return complete(expert, decomp).scales(decomp)


def complete(expert: Expert, decomp: Decomposition) -> Expert:
    """Returns a copy of `expert` with a z for every target of `decomp`, in its order: the
    identity (the base matrix) where the expert has none. Experts trained on other target sets
    can then be mixed."""
    expert.check_compatible(decomp)
    fill = identity_value(expert.parameterization)
    z = {n: expert.z[n] if n in expert.z else torch.full_like(f.S, fill, dtype=torch.float32)
         for n, f in decomp.items()}
    return dataclasses.replace(expert, z=z)


def _shift(scale: torch.Tensor, sigma: torch.Tensor, unit: str) -> np.ndarray:
    d = scale.detach().double().cpu() - 1
    if unit == UNITS[1]:
        s = sigma.detach().double().cpu()
        d = d * s / s[0]
    elif unit != UNITS[0]:
        raise ValueError(f"unknown unit {unit!r}; choose one of {UNITS}")
    return d.numpy()


def shift_grid(expert: Expert, decomp: Decomposition, module: str, *, unit: str = UNITS[0]) -> np.ndarray:
    """Returns a (layers x r) array: the shift of singular value i of `module` in each layer."""
    scales = _scales(expert, decomp)
    return np.stack([_shift(scales[n], decomp[n].S, unit) for n in _names_by_layer(decomp, module)])


def shift_profile(expert: Expert, decomp: Decomposition, *, layer: int, module: str,
                  unit: str = UNITS[0]) -> np.ndarray:
    """Returns the shift of each singular value (index 0: the largest) of one target matrix."""
    names = _names_by_layer(decomp, module)
    if not 0 <= layer < len(names):
        raise ValueError(f"layer {layer} is out of range: {module} has layers 0..{len(names) - 1}")
    return _shift(_scales(expert, decomp)[names[layer]], decomp[names[layer]].S, unit)


def relative_change(expert: Expert, decomp: Decomposition) -> dict[str, float]:
    """Returns target name -> ‖W' − W‖_F / ‖W‖_F with W = U diag(σ) Vᵀ, the decomposition (the
    base matrix up to the precision the factors are stored in). U and V are orthonormal, so this
    is ‖σ ⊙ (scale − 1)‖ / ‖σ‖, no matrix formed."""
    out = {}
    for name, scale in _scales(expert, decomp).items():
        s = decomp[name].S.detach().double().cpu()
        out[name] = float((s * (scale.detach().double().cpu() - 1)).norm() / s.norm())
    return out


def change_by_module(expert: Expert, decomp: Decomposition) -> dict[str, float]:
    """Returns module type -> the mean over layers of `relative_change`."""
    change = relative_change(expert, decomp)
    return {m: float(np.mean([change[n] for n in _names_by_layer(decomp, m)])) for m in module_types(decomp)}


def num_layers(decomp: Decomposition, module: str) -> int:
    """Returns how many layers have a target matrix of type `module`."""
    return len(_names_by_layer(decomp, module))


def similarity(experts: Mapping[str, Expert], decomp: Decomposition, *, unit: str = UNITS[0],
               per_layer: bool = False) -> np.ndarray:
    """Returns the cosine similarity of the experts' shifts: (K x K) over all targets, or
    (layers x K x K) with per_layer. Near 0: the experts moved unrelated directions."""
    modules = module_types(decomp)
    layers = len(_names_by_layer(decomp, modules[0]))
    # (K, layers, entries of one layer)
    flat = np.stack([np.concatenate([shift_grid(e, decomp, m, unit=unit) for m in modules], axis=1)
                     for e in experts.values()])
    groups = [flat[:, layer] for layer in range(layers)] if per_layer else [flat.reshape(len(experts), -1)]
    out = []
    for g in groups:
        norms = np.linalg.norm(g, axis=1)
        norms[norms == 0] = 1.0  # an unchanged expert (all scales 1) is orthogonal to everything
        out.append((g @ g.T) / np.outer(norms, norms))
    return np.stack(out) if per_layer else out[0]


def top_components(expert: Expert, decomp: Decomposition, *, k: int = 10, unit: str = UNITS[1]) -> list[dict]:
    """Returns the k singular components the expert moved most (by |shift| in `unit`): layer,
    module, index i (0: the largest σ), σ_i, scale, shift."""
    rows = []
    for name, scale in _scales(expert, decomp).items():
        layer, module = parse_target(name)
        shift = _shift(scale, decomp[name].S, unit)
        for i in np.argsort(-np.abs(shift))[:k]:
            rows.append({"layer": layer, "module": module, "index": int(i), "sigma": float(decomp[name].S[i]),
                         "scale": float(scale[i]), "shift": float(shift[i])})
    return sorted(rows, key=lambda r: -abs(r["shift"]))[:k]


# ------------------------------------------------------------------------------------ figures
def plot_profiles(experts: Mapping[str, Expert], decomp: Decomposition, *, layer: int, module: str,
                  unit: str = UNITS[0], smooth: int = 1) -> plt.Figure:
    """Returns the shift against singular-value index of each expert in one target matrix
    (`plots.plot_profiles`), with σ_i/σ_1 of that matrix in grey."""
    profiles = {name: shift_profile(e, decomp, layer=layer, module=module, unit=unit) for name, e in experts.items()}
    sigma = decomp[_names_by_layer(decomp, module)[layer]].S.detach().float().cpu().numpy()
    return plots.plot_profiles(profiles, sigma, title=f"layer {layer} {module}", unit=unit, smooth=smooth)


def plot_shift_grid(expert: Expert, decomp: Decomposition, *, module: str, unit: str = UNITS[0]) -> plt.Figure:
    """Returns the shift over layers and singular-value index of one matrix type (`plots.plot_shift_grid`)."""
    return plots.plot_shift_grid(shift_grid(expert, decomp, module, unit=unit), title=f"{expert.name}: {module}",
                                 unit=unit)


# ------------------------------------------------------------------------------- the widgets
class ExpertExplorer:
    """ipywidgets over a set of experts of one base model: profiles, heatmaps, and a mixer.

    Args:
        svf: the base model wrapped for SVF (the mixer applies mixtures to it and restores it).
        backend: generates with `svf.model` (an `HFBackend`).
        experts: name -> expert, all for this base model.
        max_new_tokens: the mixer's answer budget (greedy).

    The controls are attributes (`module`, `layer`, `unit`, `smooth`, `chosen`, `grid_expert`,
    `alphas`, `prompt`, `answer_button`), so code can set them as a user would; each change
    redraws its view. `widget()` returns the whole explorer for display.
    """

    def __init__(self, svf: SVFModel, backend, experts: Mapping[str, Expert], *, max_new_tokens: int = 64):
        import ipywidgets as w

        if not experts:
            raise ValueError("ExpertExplorer needs at least one expert; load them with t2lib.adapt.load_experts")
        for expert in experts.values():
            expert.check_compatible(svf.decomp, model_id=svf.model_id)
        kinds = {e.parameterization for e in experts.values()}
        if len(kinds) > 1:
            raise ValueError(f"the experts mix parameterizations {sorted(kinds)}; the mixer needs one kind")
        self.svf, self.backend = svf, backend
        self.experts = {n: complete(e, svf.decomp) for n, e in experts.items()}  # mixable whatever they cover
        self.max_new_tokens = max_new_tokens
        modules = module_types(svf.decomp)
        layers = len(_names_by_layer(svf.decomp, modules[0]))
        names = list(self.experts)
        self.module = w.Dropdown(options=modules, description="matrix")
        self.layer = w.IntSlider(value=0, min=0, max=layers - 1, description="layer", continuous_update=False)
        self.unit = w.ToggleButtons(options=UNITS, description="unit")
        self.smooth = w.IntSlider(value=1, min=1, max=64, description="smooth", continuous_update=False)
        self.chosen = w.SelectMultiple(options=names, value=tuple(names), description="experts")
        self.grid_expert = w.Dropdown(options=names, description="expert")
        self.alphas = {n: w.FloatSlider(value=0.0, min=0.0, max=1.0, step=0.05, description=f"α {n}",
                                        continuous_update=False, style={"description_width": "initial"},
                                        layout=w.Layout(width="28em")) for n in names}
        self.prompt = w.Textarea(value="Lena has 17 stickers and gives 5 to her friend. How many stickers "
                                       "does she have left?\nAnswer with a single number.",
                                 layout=w.Layout(width="95%", height="5em"))
        self.answer_button = w.Button(description="answer", button_style="primary")
        self.profile_out, self.grid_out, self.answer_out = w.Output(), w.Output(), w.Output()
        self.last_answers: dict[str, str] = {}
        for control in (self.module, self.layer, self.unit, self.smooth, self.chosen):
            control.observe(lambda _: self.show_profiles(), names="value")
        for control in (self.module, self.unit, self.grid_expert):
            control.observe(lambda _: self.show_grid(), names="value")
        self.answer_button.on_click(lambda _: self.show_answers())
        self._w = w

    def mixture(self) -> Expert:
        """Returns the mixture the α sliders describe (all α = 0: the base model, for "direct")."""
        alpha = torch.tensor([self.alphas[n].value for n in self.experts], dtype=torch.float32)
        return mix_experts(list(self.experts.values()), alpha, name="explorer mixture")

    def answer(self) -> dict[str, str]:
        """Returns the greedy answers to the prompt box of the base model and of the mixture."""
        from fishfarm.types import GenerationRequest, Prompt, SamplingParams

        if not self.prompt.value.strip():
            raise ValueError("the prompt box is empty: type a question to answer")
        request = [GenerationRequest(Prompt.chat(self.prompt.value), SamplingParams(max_new_tokens=self.max_new_tokens))]
        out = {}
        for label, expert in (("base", None), ("mixture", self.mixture())):
            with self.svf.using(expert):
                out[label] = self.backend.generate(request, progress=False)[0].text
        self.last_answers = out
        return out

    def show_profiles(self) -> None:
        chosen = {n: self.experts[n] for n in self.chosen.value}
        self._draw(self.profile_out, lambda: plot_profiles(chosen, self.svf.decomp, layer=self.layer.value,
                                                           module=self.module.value, unit=self.unit.value,
                                                           smooth=self.smooth.value) if chosen else None)

    def show_grid(self) -> None:
        expert = self.experts[self.grid_expert.value]
        self._draw(self.grid_out, lambda: plot_shift_grid(expert, self.svf.decomp, module=self.module.value,
                                                          unit=self.unit.value))

    def show_answers(self) -> None:
        """Answers the prompt box into the mixer's output; the button is disabled and the output
        says "answering…" while the model works (tens of seconds on a CPU)."""
        out, button = self.answer_out, self.answer_button
        label = button.description
        out.outputs = ()  # clears with or without a kernel
        out.append_stdout("answering… (base model, then the mixture)\n")
        button.disabled, button.description = True, "answering…"
        try:
            answers = self.answer()
        except ValueError as err:
            out.outputs = ()  # clears with or without a kernel
            out.append_stdout(f"{err}\n")
            return
        finally:
            button.disabled, button.description = False, label
        alpha = ", ".join(f"{n} {s.value:.2f}" for n, s in self.alphas.items())
        out.outputs = ()  # clears with or without a kernel
        out.append_stdout(f"base model:\n{answers['base']}\n\nmixture (α: {alpha}):\n{answers['mixture']}\n")

    def _draw(self, out, make) -> None:
        out.clear_output(wait=True)
        with out:
            fig = make()
            if fig is None:
                print("choose at least one expert")
                return
            plt.show()
            plt.close(fig)

    def widget(self):
        """Returns the explorer: three tabs (profiles, heatmap, mixer), drawn once."""
        w = self._w
        self.show_profiles()
        self.show_grid()
        tabs = w.Tab(children=[
            w.VBox([w.HBox([self.module, self.layer]), w.HBox([self.unit, self.smooth]), self.chosen, self.profile_out]),
            w.VBox([w.HBox([self.grid_expert, self.module]), self.unit, self.grid_out]),
            w.VBox([*self.alphas.values(), self.prompt, self.answer_button, self.answer_out]),
        ])
        for i, title in enumerate(("shift by singular value", "shift by layer", "mix and answer")):
            tabs.set_title(i, title)
        return tabs
