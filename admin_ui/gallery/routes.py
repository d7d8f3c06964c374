"""The gallery's routes on the panel's server: a member logs in with Discord and sees, searches, opens, downloads and
deletes their own jobs only.

Every route under ``/gallery`` checks the member's session itself (the panel's login gate lets them through);
a job that is not the member's answers as if it did not exist. Forms that change something carry the session's
own token (and the panel's origin guard refuses posts from other sites).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from admin_ui.gallery.gallery_settings import GallerySettings
from admin_ui.gallery.members import MemberSession, MemberSessions
from admin_ui.gallery.oauth import DiscordOAuth, OAuthError
from admin_ui.gallery.pages import grid_page, job_page, login_page
from engine.gpu.safety import ImageAction, recorded_actions
from engine.jobs.records import Job
from engine.service import Engine

log = logging.getLogger(__name__)

GALLERY_PREFIX = "/gallery"
SESSION_COOKIE = "imagine_gallery"
STATE_COOKIE = "imagine_gallery_state"
PAGE_SIZE = 48
MAX_ID = 2**63 - 1  # SQLite's largest integer: a bigger id names nothing
NO_STORE = {"Cache-Control": "no-store"}
IMAGE_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}  # not left in a shared browser
NOT_SET_UP = ("The gallery is not set up on this bot: the operator sets DISCORD_CLIENT_ID and DISCORD_CLIENT_SECRET "
              "(see docs/operators.md).")


def add_gallery_routes(app: FastAPI, engine: Engine, settings: GallerySettings, api_base: str) -> None:
    """Add the gallery to ``app``; ``api_base`` is Discord's REST base (DISCORD_API_BASE)."""
    members = MemberSessions()
    oauth = (DiscordOAuth(settings.client_id, settings.client_secret, api_base, settings.authorize_url)
             if settings.enabled and settings.client_secret is not None else None)

    # the cookies belong to the gallery's public address (GALLERY_URL), else to the address the browser used
    public = urlsplit(settings.url) if settings.url else None
    cookie_path = (public.path.rstrip("/") or "/") if public else GALLERY_PREFIX

    def root(request: Request) -> str:
        """The site's root relative to this page (``<base href>``)."""
        return "../" * max(1, request.url.path.count("/") - 1)

    def callback_uri(request: Request) -> str:
        return f"{settings.url}/callback" if settings.url else f"{str(request.base_url).rstrip('/')}/gallery/callback"

    def secure(request: Request) -> bool:
        return request.url.scheme == "https" or (public is not None and public.scheme == "https")

    def session_of(request: Request) -> MemberSession | None:
        return members.get(request.cookies.get(SESSION_COOKIE))

    async def owned(request: Request, job_id: int) -> tuple[MemberSession | None, Job | None]:
        """The member's session and job ``job_id`` when it is theirs (a job that is not answers as missing)."""
        session = session_of(request)
        if session is None or not 0 < job_id <= MAX_ID:
            return session, None
        job = await engine.get_job(job_id)
        return session, job if job is not None and job.requester.user_id == session.member.id else None

    def actions(job: Job) -> tuple[ImageAction, ...]:
        """What the bot did with each image where it was made (engine/gpu/safety.py): shown, blurred or withheld;
        the gallery does the same."""
        return recorded_actions(job, engine.settings.safety_threshold)

    def login_answer(request: Request, error: str | None = None, status: int = 200) -> HTMLResponse:
        return HTMLResponse(login_page(root(request), error or (None if oauth else NOT_SET_UP)), status_code=status,
                            headers=NO_STORE)

    @app.get(GALLERY_PREFIX, include_in_schema=False)
    async def gallery_bare() -> Response:
        return RedirectResponse("gallery/", status_code=307)

    @app.get(f"{GALLERY_PREFIX}/", include_in_schema=False)
    async def gallery(request: Request, q: str = "", before: int | None = None, deleted: int | None = None
                      ) -> Response:
        session = session_of(request)
        if session is None:
            return login_answer(request)
        query = q.strip()[:200]
        found = await engine.history(owner=session.member.id, text=query or None, limit=PAGE_SIZE,
                                     before=before if before is not None and 0 < before <= MAX_ID else None)
        older = found[-1].id if len(found) == PAGE_SIZE else None
        jobs = [job for job in found if job.results]  # retention removed the others' images
        notice = f"Deleted job {deleted} and its images." if deleted else ""
        return HTMLResponse(grid_page(root(request), session, jobs, query, older, {j.id: actions(j) for j in jobs},
                                      notice), headers=NO_STORE)

    @app.get(f"{GALLERY_PREFIX}/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        if oauth is None:
            return login_answer(request, status=503)
        if public is not None and request.url.netloc != public.netloc:  # its cookies must be the public address's
            return RedirectResponse(f"{settings.url}/login", status_code=303)
        state = members.begin()
        response = RedirectResponse(oauth.consent_url(state, callback_uri(request)), status_code=303)
        # the state is bound to this browser too: a login another site started cannot be finished here
        response.set_cookie(STATE_COOKIE, state, max_age=600, httponly=True, samesite="lax", secure=secure(request),
                            path=cookie_path)
        return response

    @app.get(f"{GALLERY_PREFIX}/callback", include_in_schema=False)
    async def callback(request: Request, code: str = "", state: str = "", error: str = "") -> Response:
        if oauth is None:
            return login_answer(request, status=503)
        cookie = request.cookies.get(STATE_COOKIE, "")
        fresh = members.finish(state) if state else False
        if error:
            answer = login_answer(request, "Discord did not log you in (you may have cancelled); try again.", 400)
        elif not (fresh and code and secrets.compare_digest(cookie.encode(), state.encode())):
            answer = login_answer(request, "This login link is out of date or was not started here; press Log in "
                                           "with Discord again.", 400)
        else:
            try:
                member = await oauth.member(code[:512], callback_uri(request))
            except OAuthError as exc:
                answer = login_answer(request, str(exc), 502)
            else:
                log.info("gallery login: member %s", member.id)
                answer = RedirectResponse("./", status_code=303)  # type: ignore[assignment]
                answer.set_cookie(SESSION_COOKIE, members.open(member), max_age=7 * 24 * 3600, httponly=True,
                                  samesite="lax", secure=secure(request), path=cookie_path)
        answer.delete_cookie(STATE_COOKIE, path=cookie_path)
        return answer

    @app.post(f"{GALLERY_PREFIX}/logout", include_in_schema=False)
    async def logout(request: Request) -> Response:
        members.close(request.cookies.get(SESSION_COOKIE))  # the origin guard keeps other sites' posts out
        response = RedirectResponse("./", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path=cookie_path)
        return response

    @app.get(f"{GALLERY_PREFIX}/job/{{job_id}}", include_in_schema=False)
    async def job(request: Request, job_id: int) -> Response:
        session, found = await owned(request, job_id)
        if session is None:
            return login_answer(request, status=401)
        if found is None or not found.results:
            return HTMLResponse(grid_page(root(request), session, [], "", None, {}, f"There is no job {job_id} of "
                                          f"yours (deleted, or made by someone else)."), status_code=404,
                                headers=NO_STORE)
        return HTMLResponse(job_page(root(request), session, found, actions(found)), headers=NO_STORE)

    @app.post(f"{GALLERY_PREFIX}/job/{{job_id}}/delete", include_in_schema=False)
    async def delete(request: Request, job_id: int) -> Response:
        session, found = await owned(request, job_id)
        if session is None or not await _csrf_ok(request, session):
            return HTMLResponse("Not logged in, or the form is out of date: reload the page.", status_code=403)
        if found is None:
            return HTMLResponse("There is no such job of yours.", status_code=404)
        await engine.delete_job(job_id)
        log.info("gallery: member %s deleted job %s", session.member.id, job_id)
        return RedirectResponse(f"../../?deleted={job_id}", status_code=303)

    @app.get(f"{GALLERY_PREFIX}/image/{{job_id}}/{{name}}", include_in_schema=False)
    async def image(request: Request, job_id: int, name: str) -> Response:
        session, found = await owned(request, job_id)
        stem, png = name.removesuffix(".png"), name.endswith(".png")
        if session is None or found is None or not (stem.isascii() and stem.isdecimal() and len(stem) <= 3):
            return Response(status_code=404)
        paths = found.results if png else found.delivery_paths
        index = int(stem)
        if index >= len(paths) or actions(found)[index] == "withhold":  # withheld where it was made: here too
            return Response(status_code=404)
        # resolving and checking the path reads the disk: off the event loop
        path = await asyncio.to_thread(_inside, Path(engine.settings.data_dir) / paths[index],
                                       Path(engine.settings.results_dir))
        if path is None:
            return Response(status_code=404)
        return FileResponse(path, headers=IMAGE_HEADERS)

    @app.api_route(f"{GALLERY_PREFIX}/{{rest:path}}", methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"],
                   include_in_schema=False)
    async def elsewhere(rest: str) -> Response:
        # nothing else under /gallery: the panel's login gate lets these paths through, so they must end here
        return Response(status_code=404)


async def _csrf_ok(request: Request, session: MemberSession) -> bool:
    form = await request.form()
    return secrets.compare_digest(str(form.get("csrf") or "").encode(), session.csrf.encode())


def _inside(path: Path, folder: Path) -> Path | None:
    """``path`` when it is a file inside ``folder`` (a stored path never leads elsewhere)."""
    resolved = path.resolve()
    return resolved if resolved.is_file() and resolved.is_relative_to(folder.resolve()) else None


__all__ = ["GALLERY_PREFIX", "add_gallery_routes"]
