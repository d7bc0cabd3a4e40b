"""Who may use the dev UI: open in ``dev``, signed-in operators only in ``start``.

Self-hosted, the operator signs in by pasting the signing key (or its fallback) on ``/signin``.
The browser then holds a session cookie — HttpOnly, SameSite=Strict, Secure over HTTPS — whose
value is ``v1.<issued unix s>.<hex HMAC-SHA256>``: the MAC of the issue time under a secret
derived from the signing key.  Nothing is stored server-side: a token is valid while it is
younger than ``MAX_AGE_S`` and was made with a currently configured key, so rotating the
signing key signs every browser out.  The key itself never leaves the sign-in request.

``guard`` is the UI router's ``before_request`` hook.  It also refuses a POST whose ``Origin``
names another site, in every mode: SameSite keeps cross-site requests from carrying the cookie,
and the origin check keeps an open dev server from being steered by another page's form.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any
from urllib.parse import quote, urlsplit

from litestar import Request, Response, get, post
from litestar.response import Redirect

from app.drivers.signing import bearer_matches, strip_key_prefix
from app.ui.render import page, plain, services_of

COOKIE = "stepwell_ui_session"
MAX_AGE_S = 7 * 24 * 3600
SIGNIN_PATH = "/signin"
_VERSION = "v1"


def _secret(signing_key: str) -> bytes:
    # A derived key, so the session MAC never uses the signing key for anything else.
    bare = strip_key_prefix(signing_key).encode("utf-8")
    return hashlib.sha256(b"stepwell-ui-session\0" + bare).digest()


def _mac(signing_key: str, issued: int) -> str:
    message = f"{_VERSION}:{issued}".encode("ascii")
    return hmac.new(_secret(signing_key), message, hashlib.sha256).hexdigest()


def make_token(signing_key: str, issued: int) -> str:
    """A session token issued at ``issued`` (unix seconds) under ``signing_key``."""
    return f"{_VERSION}.{issued}.{_mac(signing_key, issued)}"


def token_valid(token: str | None, signing_keys: tuple[str, ...], now_s: int) -> bool:
    """Whether ``token`` was made by ``make_token`` with one of the keys and is still fresh."""
    if not token:
        return False
    version, _, rest = token.partition(".")
    issued_text, _, mac = rest.partition(".")
    if version != _VERSION or not issued_text.isdigit() or len(issued_text) > 12:
        return False
    issued = int(issued_text)
    if not (now_s - MAX_AGE_S < issued <= now_s + 60):
        return False
    matched = False
    for key in signing_keys:
        if strip_key_prefix(key):
            # No short-circuit: timing must not tell which key matched.
            matched |= hmac.compare_digest(_mac(key, issued).encode(), mac.encode())
    return matched


def signed_in(request: Request[Any, Any, Any]) -> bool:
    """Dev mode, or a valid session cookie."""
    services = services_of(request)
    settings = services.settings
    if not settings.is_self_hosted:
        return True
    now_s = services.clock.now_ms() // 1000
    return token_valid(request.cookies.get(COOKIE), settings.signing_keys, now_s)


def _same_origin(request: Request[Any, Any, Any]) -> bool:
    origin = request.headers.get("origin")
    if origin is None:
        return True  # not a browser posting from a page (curl, scripts)
    return urlsplit(origin).netloc == request.headers.get("host", "")


def _safe_next(target: str | None) -> str:
    # Only a local path: an open redirect would let a link bounce a signed-in operator away.
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


async def guard(request: Request[Any, Any, Any]) -> Response[Any] | None:
    """``before_request`` of every UI route: None lets the request through."""
    if request.method == "POST" and not _same_origin(request):
        return plain(403, "cross-origin form posts are refused")
    if request.url.path == SIGNIN_PATH or signed_in(request):
        return None
    if request.method == "GET" and request.query_params.get("fragment") != "1":
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return Redirect(f"{SIGNIN_PATH}?next={quote(target, safe='')}", status_code=303)
    return plain(401, "sign in required")


@get(SIGNIN_PATH, name="ui-signin")
async def signin_page(request: Request[Any, Any, Any]) -> Response[Any]:
    """The sign-in form (self-hosted); in dev mode there is nothing to sign in to."""
    if not services_of(request).settings.is_self_hosted:
        return Redirect("/", status_code=303)
    return page(request, "signin.html", next=_safe_next(request.query_params.get("next")))


@post(SIGNIN_PATH, status_code=303)
async def signin(request: Request[Any, Any, Any]) -> Response[Any]:
    """Check the pasted signing key and set the session cookie."""
    services = services_of(request)
    settings = services.settings
    form = await request.form()
    target = _safe_next(form.get("next"))
    if not settings.is_self_hosted:
        return Redirect(target, status_code=303)
    key = str(form.get("key") or "").strip()
    if not key or not bearer_matches(f"Bearer {key}", settings.signing_keys):
        return page(request, "signin.html", status=401, next=target,
                    signin_error="That is not this server's signing key.")  # fmt: skip
    # Sign with the configured key the operator proved to hold (hash or raw, either form).
    held = next(k for k in settings.signing_keys if bearer_matches(f"Bearer {key}", (k,)))
    response: Response[Any] = Redirect(target, status_code=303)
    response.set_cookie(
        COOKIE,
        make_token(held, services.clock.now_ms() // 1000),
        max_age=MAX_AGE_S,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@post("/signout", status_code=303)
async def signout(request: Request[Any, Any, Any]) -> Response[Any]:
    """Forget the session cookie."""
    response: Response[Any] = Redirect(SIGNIN_PATH, status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


ROUTES = [signin_page, signin, signout]
