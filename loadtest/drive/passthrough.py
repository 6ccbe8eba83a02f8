"""A bare passthrough, the yardstick for the gateway's cost: aiohttp + uvloop, bytes in, bytes out, no parsing.

POST /tf -> the TF side's predict URL, POST /torch -> TorchServe's; the body and the answer pass through untouched.
What the gateway adds beyond this is the price of validating, labelling, metrics and its framework.

    python -m loadtest.drive.passthrough --port 8100 --tf-url http://127.0.0.1:8501/v1/models/digits:predict \\
        --torch-url http://127.0.0.1:8080/predictions/digits
"""

from __future__ import annotations

import argparse

import aiohttp
import uvloop
from aiohttp import web


def make_app(targets: dict[str, str]) -> web.Application:
    async def start(app: web.Application) -> None:
        app["session"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200), trust_env=False)

    async def stop(app: web.Application) -> None:
        await app["session"].close()

    def route(url: str):  # type: ignore[no-untyped-def]
        async def forward(request: web.Request) -> web.Response:
            body = await request.read()
            async with request.app["session"].post(url, data=body, headers={"Content-Type": "application/json"}) as r:
                return web.Response(body=await r.read(), status=r.status, content_type="application/json")

        return forward

    app = web.Application()
    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    for name, url in targets.items():
        app.router.add_post(f"/{name}", route(url))
    return app


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtest.drive.passthrough", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--tf-url", required=True)
    p.add_argument("--torch-url", required=True)
    args = p.parse_args(argv)
    uvloop.install()
    web.run_app(make_app({"tf": args.tf_url, "torch": args.torch_url}), host=args.host, port=args.port, print=None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
