"""Exploring experts in notebook 07: what each one did to the singular values, and what a mixture answers.

The numbers come from `t2lib.core.spectra` (shift of each singular value, in two units), the
drawing from `t2lib.views.plots`; the two figures here pick one matrix of each expert and draw
it, and `ExpertExplorer` wraps them in ipywidgets. A headless run saves the same views as PNG.
"""
from __future__ import annotations

from typing import Mapping

import matplotlib.pyplot as plt
import torch

from t2lib.core.experts import Expert
from t2lib.core.mixing import complete, mix
from t2lib.core.spectra import UNITS, names_by_layer, shift_grid, shift_profile
from t2lib.core.svd import Decomposition, module_types
from t2lib.core.svf import SVFModel
from t2lib.views import plots


# ------------------------------------------------------------------------------------ figures
def profiles_figure(experts: Mapping[str, Expert], decomp: Decomposition, *, layer: int, module: str,
                  unit: str = UNITS[0], smooth: int = 1) -> plt.Figure:
    """Returns the shift against singular-value index of each expert in one target matrix
    (`plots.plot_profiles`), with σ_i/σ_1 of that matrix in grey."""
    profiles = {name: shift_profile(e, decomp, layer=layer, module=module, unit=unit) for name, e in experts.items()}
    sigma = decomp[names_by_layer(decomp, module)[layer]].S.detach().float().cpu().numpy()
    return plots.plot_profiles(profiles, sigma, title=f"layer {layer} {module}", unit=unit, smooth=smooth)


def grid_figure(expert: Expert, decomp: Decomposition, *, module: str, unit: str = UNITS[0]) -> plt.Figure:
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
            raise ValueError("ExpertExplorer needs at least one expert; load them with t2lib.runs.expert_sets.load_expert_set")
        for expert in experts.values():
            expert.check_compatible(svf.decomp, model_id=svf.model_id)
        kinds = {e.parameterization for e in experts.values()}
        if len(kinds) > 1:
            raise ValueError(f"the experts mix parameterizations {sorted(kinds)}; the mixer needs one kind")
        self.svf, self.backend = svf, backend
        self.experts = {n: complete(e, svf.decomp) for n, e in experts.items()}  # mixable whatever they cover
        self.max_new_tokens = max_new_tokens
        modules = module_types(svf.decomp)
        layers = len(names_by_layer(svf.decomp, modules[0]))
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
        return mix(list(self.experts.values()), alpha, name="explorer mixture")

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
        self._draw(self.profile_out, lambda: profiles_figure(chosen, self.svf.decomp, layer=self.layer.value,
                                                           module=self.module.value, unit=self.unit.value,
                                                           smooth=self.smooth.value) if chosen else None)

    def show_grid(self) -> None:
        expert = self.experts[self.grid_expert.value]
        self._draw(self.grid_out, lambda: grid_figure(expert, self.svf.decomp, module=self.module.value,
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
