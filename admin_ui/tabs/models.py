"""Models tab: the catalogue of models and LoRAs members may choose (add, change, describe, mark NSFW, remove,
reset to .env), and which of them each server allows, with its default model."""

from __future__ import annotations

import html
from typing import Any

import gradio as gr

from admin_ui.context import PanelContext, ScopeError, error, note, ok
from engine.requests.params import ParamError
from engine.rules.catalogue import DESCRIPTION_MAX, Kind, make_lora, make_model
from engine.rules.policy import GLOBAL

NEW = "(new)"
KINDS: dict[str, Kind] = {"Model": "model", "LoRA": "lora"}
FIRST_ALLOWED = "(the first allowed)"


def catalogue_table(ctx: PanelContext) -> str:
    """Every model and LoRA offered, with where it comes from and whether a model is on the GPU now."""
    catalogue, offer = ctx.engine.catalogue, ctx.engine.catalogue.offer
    status = ctx.engine.status()  # models on this GPU, or on a GPU worker over NATS
    loaded = {*status.loaded, *(name for worker in status.workers for name in worker.models)}
    rows = []
    for kind, entries in (("model", offer.models), ("lora", offer.loras)):
        for e in entries:
            how = (("default; " if e.name == catalogue.default_model else "")
                   + ("on the GPU now" if e.name in loaded else "loaded at its first use")) if kind == "model" else (
                f"weight {e.weight:g}" + (f"; adds “{e.triggers}”" if e.triggers else ""))  # type: ignore[union-attr]
            cells = ("Model" if kind == "model" else "LoRA", e.name, e.source, e.description or "—",
                     "NSFW channels only" if e.nsfw else "everywhere", how, catalogue.origin(kind, e.name))
            rows.append("<tr>" + "".join(f"<td>{html.escape(c, quote=False)}</td>" for c in cells) + "</tr>")
    removed = [f"{kind} {name}" for kind in ("model", "lora") for name in catalogue.removed(kind)]  # type: ignore
    head = "".join(f"<th>{h}</th>" for h in ("Kind", "Name", "Source", "Description", "Where", "State", "From"))
    tail = (f'<p class="imagine-note">Removed from .env\'s list here: {html.escape(", ".join(removed))} (Reset '
            f'brings one back).</p>' if removed else "")
    return f'<table class="imagine-styles imagine-catalogue"><tr>{head}</tr>{"".join(rows)}</table>{tail}'


def build(ctx: PanelContext, demo: gr.Blocks) -> None:
    """Add the Models tab's components and events to the current Blocks."""
    engine = ctx.engine
    catalogue = engine.catalogue
    where = ("a hub id (org/name) or a path on this host" if catalogue.local else
             "a hub id (org/name) or a path on the GPU workers' hosts")
    gr.Markdown("Members choose among these with `/imagine model:` and `lora:` (or `--model`, `--lora`); changes "
                "apply at once and are kept across restarts, on top of `MODELS` and `LORAS` in .env. A new entry "
                "is loaded on the GPU at its first use. Try one in the Playground tab before you announce it.")
    table = gr.HTML(catalogue_table(ctx))
    with gr.Row():
        kind = gr.Radio(list(KINDS), value="Model", label="Kind")
        # choices change at run time, and Gradio checks a value against the ones it was built with
        pick = gr.Dropdown([NEW, *(e.name for e in catalogue.offer.models)], value=NEW, label="Entry",
                           allow_custom_value=True)
    with gr.Row():
        name = gr.Textbox(label="Name", placeholder="anime", info="lower-case letters, digits, - or _ (what members "
                                                                 "type)")
        source = gr.Textbox(label="Source", placeholder="org/model or /models/anime", info=where)
    with gr.Row():
        weight = gr.Number(value=1.0, label="Default weight (LoRA)", info="-2 to 2; members may give their own")
        triggers = gr.Textbox(label="Trigger words (LoRA)", placeholder="pixel art",
                              info="added to the prompt when a member's words lack them")
    with gr.Row():
        description = gr.Textbox(label="Description", placeholder="flat colours, bold outlines",
                                 info=f"shown beside the name in Discord's list (at most {DESCRIPTION_MAX} "
                                      f"characters)")
        nsfw = gr.Checkbox(value=False, label="NSFW channels only")
    with gr.Row():
        save = gr.Button("Save", variant="primary")
        remove = gr.Button("Remove", variant="stop")
        reset = gr.Button("Reset to .env")
    message = gr.HTML()
    gr.Markdown("### What a server allows\nEmpty lists allow everything offered. A server's default model is used "
                "when a member names none; members of that server can also set it with `/settings`.")
    with gr.Row():
        scope = gr.Dropdown(ctx.scope_choices(), value=GLOBAL, allow_custom_value=True, label="Scope")
        default_model = gr.Dropdown([FIRST_ALLOWED], value=FIRST_ALLOWED, label="Default model",
                                    allow_custom_value=True)
    with gr.Row():
        models_allowed = gr.Dropdown([], value=[], multiselect=True, label="Models allowed", allow_custom_value=True)
        loras_allowed = gr.Dropdown([], value=[], multiselect=True, label="LoRAs allowed", allow_custom_value=True)
    save_lists = gr.Button("Save for this scope")
    lists_message = gr.HTML()

    def names(kind_value: str) -> list[str]:
        offer = catalogue.offer
        return [e.name for e in (offer.models if KINDS.get(kind_value) == "model" else offer.loras)]

    async def load(kind_value: str, value: str) -> tuple[Any, ...]:
        """An entry's fields into the form (empty for a new one)."""
        offer = catalogue.offer
        entry = offer.model(value) if KINDS.get(kind_value) == "model" else offer.lora(value)
        if not value or value == NEW or entry is None:
            return "", "", 1.0, "", "", False
        return (entry.name, entry.source, getattr(entry, "weight", 1.0), getattr(entry, "triggers", ""),
                entry.description, entry.nsfw)

    async def switch_kind(kind_value: str) -> Any:
        return gr.update(choices=[NEW, *names(kind_value)], value=NEW)

    def after(text: str, kind_value: str, picked: str) -> tuple[Any, ...]:
        return ok(text), catalogue_table(ctx), gr.update(choices=[NEW, *names(kind_value)], value=picked)

    async def save_entry(kind_value: str, name_value: str, source_value: str, weight_value: float | None,
                         triggers_value: str, description_value: str, nsfw_value: bool) -> tuple[Any, ...]:
        """Check and keep an entry (replacing one of the same name)."""
        try:
            if KINDS.get(kind_value) == "model":
                entry: Any = make_model(name_value, source_value, description_value, nsfw_value,
                                        local=catalogue.local)
            else:
                entry = make_lora(name_value, source_value, weight_value, triggers_value, description_value,
                                  nsfw_value, local=catalogue.local)
            await catalogue.save(entry)
        except ParamError as exc:
            return error(f"Not saved: {exc}."), gr.skip(), gr.skip()
        return after(f"Saved the {kind_value} '{entry.name}'; members can choose it now.", kind_value, entry.name)

    async def remove_entry(kind_value: str, name_value: str) -> tuple[Any, ...]:
        """Stop offering an entry."""
        try:
            await catalogue.remove(KINDS.get(kind_value, "model"), name_value)
        except ParamError as exc:
            return error(f"Not removed: {exc}."), gr.skip(), gr.skip()
        return after(f"Removed the {kind_value} '{name_value.strip().lower()}'; requests naming it are refused.",
                     kind_value, NEW)

    async def reset_entry(kind_value: str, name_value: str) -> tuple[Any, ...]:
        """Drop the panel's edit of an .env entry."""
        try:
            await catalogue.reset(KINDS.get(kind_value, "model"), name_value)
        except ParamError as exc:
            return error(f"Not reset: {exc}."), gr.skip(), gr.skip()
        clean = name_value.strip().lower()
        return after(f"The {kind_value} '{clean}' is as .env has it again.", kind_value, clean)

    async def load_lists(scope_value: str) -> tuple[Any, ...]:
        """A scope's default model and allow-lists, with what may be chosen."""
        try:
            scope_id = ctx.scope(scope_value)
        except ScopeError as exc:
            return gr.skip(), gr.skip(), gr.skip(), error(str(exc))
        d = engine.policy.defaults(None if scope_id == GLOBAL else scope_id)
        offer = catalogue.offer
        models, loras = [e.name for e in offer.models], [e.name for e in offer.loras]
        return (gr.update(choices=[FIRST_ALLOWED, *models], value=d.model if d.model in models else FIRST_ALLOWED),
                gr.update(choices=models, value=[n for n in d.models_allowed if n in models]),
                gr.update(choices=loras, value=[n for n in d.loras_allowed if n in loras]),
                note(f"Showing {ctx.scope_label(scope_id)}."))

    async def store_lists(scope_value: str, model_value: str, models_value: list[str] | None,
                          loras_value: list[str] | None) -> str:
        """Store a scope's default model and allow-lists (checked against what is offered)."""
        try:
            scope_id = ctx.scope(scope_value)
            await engine.policy.set_defaults(scope_id, {
                "model": "" if model_value in (None, FIRST_ALLOWED) else model_value,
                "models_allowed": list(models_value or []), "loras_allowed": list(loras_value or [])})
        except (ScopeError, ParamError) as exc:
            return error(f"Not saved: {exc}.")
        return ok(f"Saved what {ctx.scope_label(scope_id)} allows; the next /imagine follows it.")

    fields = [name, source, weight, triggers, description, nsfw]
    kind.change(switch_kind, inputs=[kind], outputs=[pick], api_name="catalogue_kind", concurrency_limit=None)
    pick.change(load, inputs=[kind, pick], outputs=fields, api_name="load_entry", concurrency_limit=None)
    save.click(save_entry, inputs=[kind, *fields], outputs=[message, table, pick], api_name="save_entry",
               concurrency_limit=None)
    remove.click(remove_entry, inputs=[kind, name], outputs=[message, table, pick], api_name="remove_entry",
                 concurrency_limit=None)
    reset.click(reset_entry, inputs=[kind, name], outputs=[message, table, pick], api_name="reset_entry",
                concurrency_limit=None)
    scope.change(load_lists, inputs=[scope], outputs=[default_model, models_allowed, loras_allowed, lists_message],
                 api_name="load_allowed", concurrency_limit=None)
    save_lists.click(store_lists, inputs=[scope, default_model, models_allowed, loras_allowed],
                     outputs=[lists_message], api_name="save_allowed", concurrency_limit=None)
    demo.load(lambda: catalogue_table(ctx), outputs=[table], api_name="catalogue", concurrency_limit=None,
              show_progress="hidden")
    demo.load(load_lists, inputs=[scope], outputs=[default_model, models_allowed, loras_allowed, lists_message],
              api_name="allowed_form", concurrency_limit=None, show_progress="hidden")


__all__ = ["build", "catalogue_table"]
