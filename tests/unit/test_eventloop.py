"""The processes' event loop: uvloop's, and it runs what asyncio.run would."""

from __future__ import annotations

import asyncio

import pytest
import uvloop

from controller.edges import eventloop


def test_run_returns_the_result_on_a_uvloop_loop() -> None:
    async def main() -> type:
        await asyncio.sleep(0)
        return type(asyncio.get_running_loop())

    assert eventloop.run(main()) is uvloop.Loop


def test_run_raises_what_the_coroutine_raises() -> None:
    async def main() -> None:
        raise ValueError("bad config")

    with pytest.raises(ValueError, match="bad config"):
        eventloop.run(main())
