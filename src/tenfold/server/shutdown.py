"""Answer, as JSON, the requests a server shutdown cuts off.

On SIGTERM uvicorn stops accepting connections, waits ``shutdown_grace_s`` for running
requests, then cancels what is left; uvicorn would answer those with a plain-text 500.
This outermost middleware answers a request cancelled before its response started with
``503 {"error": {"type": "not_ready", "message": "the server is shutting down"}}`` and
``Retry-After`` (another replica may take it) and ends the request there (only when its
task was cancelled: a CancelledError raised without that is no shutdown): the
cancellation asked for exactly that, and letting it through would only make uvicorn log a
traceback per request. One whose response had started is left to uvicorn. (Items
still *queued* at SIGTERM are answered the same way at once, by
:meth:`tenfold.server.app.Server.begin_shutdown`; this catches the running ones.)
"""

from __future__ import annotations

import asyncio
import contextlib

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tenfold.errors import shutting_down
from tenfold.server.errors import error_response


class ShutdownMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if started or task is None or not task.cancelling():
                # Not this request's task cancelled (a cancelled future awaited, say): a
                # bug to surface, not a shutdown to report as one.
                raise
            # The connection may be gone already: then there is no one to answer.
            with contextlib.suppress(Exception):
                await error_response(shutting_down())(scope, receive, send)
