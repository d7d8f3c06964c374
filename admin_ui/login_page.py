"""The on-brand login page, served by the parent app (Gradio's file route needs the login cookie)."""

from __future__ import annotations

import html

from admin_ui.theme import BACKGROUND_URL, BRAND_PREFIX, FONT_NAME, PRODUCT_NAME, TAGLINE

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{product} · log in</title>
<link rel="icon" type="image/png" href="{brand}/favicon.png">
<style>
@font-face {{ font-family: '{font}'; font-weight: 400;
  src: url('{brand}/fonts/{font_file}-Regular.woff2') format('woff2'); }}
@font-face {{ font-family: '{font}'; font-weight: 700;
  src: url('{brand}/fonts/{font_file}-Bold.woff2') format('woff2'); }}
* {{ box-sizing: border-box; }}
html, body {{ height: 100%; margin: 0; }}
body {{
  font-family: '{font}', ui-sans-serif, system-ui, sans-serif; color: #f0fdf4;
  background: #06140d url('{background}') center / cover fixed no-repeat;
  display: flex; align-items: center; justify-content: center;
}}
main {{
  width: min(380px, 92vw); padding: 32px 30px 26px; border-radius: 18px;
  background: rgba(7, 28, 19, 0.78); border: 1px solid rgba(134, 239, 172, 0.16);
  box-shadow: 0 20px 60px rgba(0, 0, 0, 0.45); backdrop-filter: blur(6px);
}}
h1 {{ margin: 0; font-size: 2rem; letter-spacing: 0.02em; text-shadow: 0 2px 18px rgba(34, 197, 94, 0.35); }}
h1 span {{ color: #4ade80; }}
p.tagline {{ margin: 6px 0 22px; color: #bbf7d0; font-size: 0.9rem; line-height: 1.4; }}
label {{ display: block; margin: 12px 0 6px; font-size: 0.85rem; color: #d1fae5; }}
input {{
  width: 100%; padding: 10px 12px; border-radius: 10px; font: inherit; color: #f0fdf4;
  background: rgba(2, 14, 9, 0.55); border: 1px solid rgba(134, 239, 172, 0.22); outline: none;
}}
input:focus {{ border-color: #4ade80; box-shadow: 0 0 0 3px rgba(74, 222, 128, 0.2); }}
button {{
  width: 100%; margin-top: 22px; padding: 11px; border: 0; border-radius: 10px; cursor: pointer;
  font: inherit; font-weight: 700; color: white; background: linear-gradient(135deg, #22c55e, #059669);
  box-shadow: 0 4px 14px rgba(34, 197, 94, 0.35);
}}
button:hover {{ background: linear-gradient(135deg, #4ade80, #10b981); }}
.error {{ margin: 14px 0 0; padding: 9px 12px; border-radius: 10px; font-size: 0.85rem;
  background: rgba(127, 29, 29, 0.55); border: 1px solid #f87171; color: #fee2e2; }}
.hint {{ margin: 16px 0 0; font-size: 0.75rem; color: #a7f3d0; opacity: 0.8; line-height: 1.4; }}
</style>
</head>
<body>
<main>
<h1>{product}<span>.</span></h1>
<p class="tagline">{tagline}</p>
{content}</main>
</body>
</html>
"""


_LOGIN_FORM = """<form method="post" action="login">
<label for="username">User</label>
<input id="username" name="username" autocomplete="username" value="{username}" required>
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required autofocus>
{error}
<button type="submit">Log in</button>
</form>
<p class="hint">The password is ADMIN_PASSWORD, or the one generated on first start and stored under DATA_DIR.</p>
"""
# logging out is a POST (a GET could be triggered by any page), so GET /logout shows this button
_LOGOUT_FORM = """<form method="post" action="logout">
<button type="submit">Log out</button>
</form>
<p class="hint"><a href="./" style="color: inherit">Back to the panel</a></p>
"""


def _page(content: str) -> str:
    return _PAGE.format(
        product=html.escape(PRODUCT_NAME), tagline=html.escape(TAGLINE), brand=BRAND_PREFIX,
        background=BACKGROUND_URL, font=FONT_NAME, font_file=FONT_NAME.replace(" ", ""), content=content,
    )


def render_login_page(error: str | None = None, username: str = "") -> str:
    """The login page HTML; ``error`` is shown above the button."""
    return _page(_LOGIN_FORM.format(username=html.escape(username),
                                    error=f'<p class="error">{html.escape(error)}</p>' if error else ""))


def render_logout_page() -> str:
    """A page with one Log out button (what GET /logout shows)."""
    return _page(_LOGOUT_FORM)


__all__ = ["render_login_page", "render_logout_page"]
