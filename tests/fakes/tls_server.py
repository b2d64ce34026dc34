"""The scriptable JSON API (`FakeApiServer`) over https, with a certificate from a throw-away CA
(trustme) that nothing trusts unless a test hands its `client_context()` to the client.

The certificate names `localhost`, 127.0.0.1 and `TLS_NAME`, a name no DNS knows: a test maps it to
127.0.0.1 with an injected resolver, so TLS checks the certificate against that name (SNI) while the
connection goes to the address the resolver gave.
"""

from __future__ import annotations

import ssl

import trustme
from aiohttp import web

from fakes.api_server import FakeApiServer

TLS_NAME = "api.voicerag-test.example"


class TlsApiServer(FakeApiServer):
    def __init__(self) -> None:
        super().__init__()
        self.ca = trustme.CA()
        certificate = self.ca.issue_cert("localhost", "127.0.0.1", TLS_NAME)
        self._server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        certificate.configure_cert(self._server_context)

    def url_for(self, path: str = "/", host: str = "127.0.0.1") -> str:
        return f"https://{host}:{self.port}{path}"

    @property
    def url(self) -> str:
        return self.url_for("")

    def client_context(self) -> ssl.SSLContext:
        """A verifying client context that trusts this server's CA (and only it): the test's control."""
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context

    async def _setup(self) -> None:
        app = web.Application()
        self.routes(app)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self._server_context)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
