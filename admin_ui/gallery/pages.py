"""The gallery's pages, in the panel's look: plain HTML (no script but a confirm before Delete), every value from a
job or from Discord escaped. Links are relative to the site's root through ``<base href>``, so the gallery works
behind a reverse proxy that serves it under a path."""

from __future__ import annotations

import html
import time
from collections.abc import Sequence
from urllib.parse import urlencode

from admin_ui.gallery.members import MemberSession
from admin_ui.theme import BACKGROUND_URL, BRAND_PREFIX, FONT_NAME, PRODUCT_NAME
from engine.jobs.records import Job

PROMPT_CHARS = 140  # of a card's caption

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<base href="{root}">
<title>{title} · {product}</title>
<link rel="icon" type="image/png" href="{brand}/favicon.png">
<style>
@font-face {{ font-family: '{font}'; font-weight: 400; src: url('{brand}/fonts/{font_file}-Regular.woff2'); }}
@font-face {{ font-family: '{font}'; font-weight: 700; src: url('{brand}/fonts/{font_file}-Bold.woff2'); }}
* {{ box-sizing: border-box; }}
body {{ margin: 0; min-height: 100vh; font-family: '{font}', ui-sans-serif, system-ui, sans-serif; color: #f0fdf4;
  background: #06140d url('{background}') center / cover fixed no-repeat; }}
a {{ color: #86efac; }}
header {{ display: flex; align-items: center; gap: 16px; flex-wrap: wrap; padding: 18px 28px;
  background: rgba(7, 28, 19, 0.8); border-bottom: 1px solid rgba(134, 239, 172, 0.16); }}
header h1 {{ margin: 0; font-size: 1.6rem; }} header h1 span {{ color: #4ade80; }}
header .who {{ margin-left: auto; color: #bbf7d0; }}
main {{ padding: 24px 28px 40px; max-width: 1280px; margin: 0 auto; }}
.card {{ background: rgba(7, 28, 19, 0.78); border: 1px solid rgba(134, 239, 172, 0.16); border-radius: 16px;
  padding: 22px; box-shadow: 0 20px 60px rgba(0, 0, 0, 0.35); }}
.lonely {{ width: min(460px, 92vw); margin: 12vh auto; }}
form.inline {{ display: inline; margin: 0; }}
button, .button {{ display: inline-block; padding: 9px 16px; border: 0; border-radius: 10px; cursor: pointer;
  font: inherit; font-weight: 700; color: white; text-decoration: none;
  background: linear-gradient(135deg, #22c55e, #059669); }}
button.quiet {{ background: rgba(134, 239, 172, 0.12); color: #d1fae5; font-weight: 400; }}
button.danger {{ background: rgba(220, 38, 38, 0.55); }}
input[type=search] {{ width: min(420px, 100%); padding: 9px 12px; border-radius: 10px; font: inherit;
  color: #f0fdf4; background: rgba(2, 14, 9, 0.55); border: 1px solid rgba(134, 239, 172, 0.22); }}
.grid {{ display: grid; grid-template-columns: repeat(auto-fill, minmax(220px, 1fr)); gap: 16px; margin-top: 20px; }}
.tile {{ display: block; color: inherit; text-decoration: none; background: rgba(7, 28, 19, 0.78);
  border: 1px solid rgba(134, 239, 172, 0.16); border-radius: 14px; overflow: hidden; }}
.tile img {{ width: 100%; aspect-ratio: 1; object-fit: cover; display: block; background: #021009; }}
.tile p {{ margin: 8px 10px 10px; font-size: 0.85rem; line-height: 1.35; }}
.tile small, .muted {{ color: #a7f3d0; opacity: 0.85; }}
.nsfw img {{ filter: blur(24px); }}
.held {{ display: flex; align-items: center; justify-content: center; aspect-ratio: 1; width: 100%;
  background: #021009; color: #a7f3d0; font-size: 0.85rem; text-align: center; padding: 12px; }}
.images {{ display: flex; flex-wrap: wrap; gap: 16px; margin: 18px 0; }}
.images figure {{ margin: 0; width: min(512px, 100%); }}
.images img {{ width: 100%; border-radius: 12px; display: block; }}
pre {{ white-space: pre-wrap; word-break: break-word; background: rgba(2, 14, 9, 0.55); padding: 12px 14px;
  border-radius: 10px; font-size: 0.85rem; }}
.error {{ padding: 9px 12px; border-radius: 10px; background: rgba(127, 29, 29, 0.55); border: 1px solid #f87171; }}
</style>
</head>
<body>
{body}
</body>
</html>
"""


def _page(root: str, title: str, body: str) -> str:
    return _PAGE.format(root=html.escape(root), title=html.escape(title), product=html.escape(PRODUCT_NAME),
                        brand=BRAND_PREFIX, background=BACKGROUND_URL, font=FONT_NAME,
                        font_file=FONT_NAME.replace(" ", ""), body=body)


def _header(session: MemberSession) -> str:
    return (f'<header><h1><a href="gallery/" style="color: inherit; text-decoration: none">'
            f'{html.escape(PRODUCT_NAME)}<span>.</span></a></h1><span class="muted">your images</span>'
            f'<span class="who">{html.escape(session.member.name)}</span>'
            f'<form class="inline" method="post" action="gallery/logout">{_csrf(session)}'
            f'<button class="quiet" type="submit">Log out</button></form></header>')


def _csrf(session: MemberSession) -> str:
    return f'<input type="hidden" name="csrf" value="{html.escape(session.csrf)}">'


def login_page(root: str, error: str | None = None) -> str:
    """The page a member sees before logging in (``error``: why the last try did not work)."""
    problem = f'<p class="error">{html.escape(error)}</p>' if error else ""
    return _page(root, "Log in", f'<main><div class="card lonely"><h1>{html.escape(PRODUCT_NAME)}'
                 f'<span style="color: #4ade80">.</span></h1><p>The images you made with <b>/imagine</b>, on the '
                 f'web: search them, open them with their parameters, download the PNGs, delete what you do not '
                 f'want to keep. Only you see yours.</p>{problem}<p><a class="button" href="gallery/login">Log in '
                 f'with Discord</a></p><p class="muted">Discord tells the gallery who you are (your id and name), '
                 f'nothing else.</p></div></main>')


def grid_page(root: str, session: MemberSession, jobs: Sequence[Job], query: str, older: int | None,
              actions: dict[int, Sequence[str]], notice: str = "") -> str:
    """A member's jobs, newest first, each as its first image shown where it was made (``actions``: engine/gpu/
    safety.py's for each job: post, spoiler, withhold); ``older``: the id the next page starts below."""
    tiles = []
    for job in jobs:
        prompt = job.params.user_prompt or job.params.prompt
        if len(prompt) > PROMPT_CHARS:
            prompt = prompt[:PROMPT_CHARS] + "…"
        count = len(job.results)
        shown = [i for i, action in enumerate(actions.get(job.id, ())) if action != "withhold"]
        model = f" · {html.escape(job.params.model)}" if job.params.model else ""
        picture = (f'<img loading="lazy" alt="" src="gallery/image/{job.id}/{shown[0]}">' if shown else
                   '<div class="held">withheld (NSFW)</div>')
        shy = " nsfw" if shown and actions[job.id][shown[0]] == "spoiler" else ""
        tiles.append(f'<a class="tile{shy}" href="gallery/job/{job.id}">{picture}<p>{html.escape(prompt)}<br><small>'
                     f'{_when(job.created_at)} · {count} image{"s" if count != 1 else ""}{model}</small></p></a>')
    if tiles:
        body = f'<div class="grid">{"".join(tiles)}</div>'
    elif query:
        body = f'<p>Nothing of yours matches “{html.escape(query)}”. Try fewer words.</p>'
    else:
        body = "<p>No images yet. Type <b>/imagine</b> in Discord; what you make shows up here.</p>"
    more = (f'<p><a class="button" href="gallery/?{html.escape(urlencode({"q": query, "before": older}))}">'
            f'Older</a></p>' if older is not None else "")
    done = f'<p class="muted">{html.escape(notice)}</p>' if notice else ""
    search = (f'<form method="get" action="gallery/"><input type="search" name="q" value="{html.escape(query)}" '
              f'placeholder="search your prompts" aria-label="Search your prompts"> <button type="submit">Search'
              f'</button></form>')
    return _page(root, "Your images", f'{_header(session)}<main>{done}{search}{body}{more}</main>')


def job_page(root: str, session: MemberSession, job: Job, actions: Sequence[str]) -> str:
    """One job: its images (each with its PNG) as they were shown where it was made (``actions``: blurred where
    they were spoilered, left out where withheld), the parameters as the PNG holds them, and Delete."""
    seeds = job.params.seeds
    figures = []
    for index in range(len(job.results)):
        seed = seeds[index] if index < len(seeds) else job.params.seed
        action = actions[index] if index < len(actions) else "post"
        if action == "withhold":
            figures.append(f'<figure><div class="held">image {index + 1} withheld: NSFW, where it was made'
                           f'</div><figcaption class="muted">seed {seed}</figcaption></figure>')
            continue
        shy = ' class="nsfw"' if action == "spoiler" else ""
        figures.append(f'<figure{shy}><img alt="image {index + 1}" src="gallery/image/{job.id}/{index}">'
                       f'<figcaption class="muted">seed {seed} · <a href="gallery/image/{job.id}/{index}.png" '
                       f'download="imagine-{job.id}-{index + 1}.png">Download PNG</a></figcaption></figure>')
    warn = ('<p class="muted">Blurred or withheld as where it was made: the server shows such images only in '
            'channels marked NSFW.</p>' if any(a != "post" for a in actions) else "")
    delete = (f'<form method="post" action="gallery/job/{job.id}/delete" onsubmit="return confirm('
              f"'Delete this job and its images for good?')\">{_csrf(session)}"
              f'<button class="danger" type="submit">Delete job and images</button></form>')
    prompt = job.params.user_prompt or job.params.prompt
    return _page(root, f"Job {job.id}", f'{_header(session)}<main><p><a href="gallery/">← all your images</a></p>'
                 f'<div class="card"><h2 style="margin-top: 0">{html.escape(prompt)}</h2>'
                 f'<p class="muted">job {job.id} · {_when(job.created_at)}</p>{warn}'
                 f'<div class="images">{"".join(figures)}</div><h3>Parameters (as the PNG holds them)</h3>'
                 f'<pre>{html.escape(job.params.describe())}</pre>{delete}</div></main>')


def _when(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(timestamp))


__all__ = ["grid_page", "job_page", "login_page"]
