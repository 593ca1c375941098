"""Capabilities and Set/GetForwardingPipelineConfig over a real gRPC channel."""

from __future__ import annotations

import grpc
import pytest
from finsy.proto import p4r

from tests.softswitch.p4rt_support import (
    DEVICE_CONFIG,
    DEVICE_ID,
    flow_entry,
    p4info,
    running_server,
    update,
)

Set = p4r.SetForwardingPipelineConfigRequest
Get = p4r.GetForwardingPipelineConfigRequest


def config(cookie: int = 7, device_config: bytes = DEVICE_CONFIG) -> p4r.ForwardingPipelineConfig:
    return p4r.ForwardingPipelineConfig(p4info=p4info(), p4_device_config=device_config,
                                        cookie=p4r.ForwardingPipelineConfig.Cookie(cookie=cookie))


async def set_config(h, action, cfg=None, device_id=DEVICE_ID):
    await h.stub.SetForwardingPipelineConfig(Set(device_id=device_id, action=action,
                                                 config=cfg or config()))


async def get_config(h, response_type=Get.ALL) -> p4r.ForwardingPipelineConfig:
    response = await h.stub.GetForwardingPipelineConfig(
        Get(device_id=DEVICE_ID, response_type=response_type))
    return response.config


async def test_capabilities_reports_an_api_version() -> None:
    async with running_server() as h:
        response = await h.stub.Capabilities(p4r.CapabilitiesRequest())
        assert response.p4runtime_api_version.startswith("1.")


async def test_get_without_pipeline_is_failed_precondition() -> None:
    async with running_server() as h:
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await get_config(h)
        assert exc.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_verify_and_commit_then_get_each_response_type() -> None:
    async with running_server() as h:
        await set_config(h, Set.VERIFY_AND_COMMIT, config(cookie=42))
        full = await get_config(h, Get.ALL)
        assert full.cookie.cookie == 42
        assert full.p4info == p4info()
        assert full.p4_device_config == DEVICE_CONFIG
        cookie_only = await get_config(h, Get.COOKIE_ONLY)
        assert cookie_only.cookie.cookie == 42
        assert not cookie_only.HasField("p4info") and not cookie_only.p4_device_config
        p4info_only = await get_config(h, Get.P4INFO_AND_COOKIE)
        assert p4info_only.HasField("p4info") and not p4info_only.p4_device_config
        device_only = await get_config(h, Get.DEVICE_CONFIG_AND_COOKIE)
        assert device_only.p4_device_config and not device_only.HasField("p4info")


async def test_verify_does_not_install_and_save_then_commit_does() -> None:
    async with running_server() as h:
        await set_config(h, Set.VERIFY)
        assert h.device.pipeline is None
        await set_config(h, Set.VERIFY_AND_SAVE, config(cookie=9))
        assert h.device.pipeline is None
        await h.stub.SetForwardingPipelineConfig(Set(device_id=DEVICE_ID, action=Set.COMMIT))
        assert (await get_config(h, Get.COOKIE_ONLY)).cookie.cookie == 9


def tmp_device_config(device_data: bytes) -> bytes:
    """A p4.tmp.P4DeviceConfig{reassign: true, device_data} in protobuf wire format."""
    assert len(device_data) < 128
    return b"\x08\x01" + b"\x1a" + bytes([len(device_data)]) + device_data


async def test_tutorials_p4_device_config_wrapper_is_accepted() -> None:
    async with running_server() as h:
        await set_config(h, Set.VERIFY_AND_COMMIT,
                         config(device_config=tmp_device_config(DEVICE_CONFIG)))
        assert h.device.pipeline is not None


async def test_commit_without_saved_config_is_not_found() -> None:
    """The spec's SetForwardingPipelineConfig RPC: NOT_FOUND when nothing was saved."""
    async with running_server() as h:
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await h.stub.SetForwardingPipelineConfig(Set(device_id=DEVICE_ID, action=Set.COMMIT))
        assert exc.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(("action", "cfg"), [
    (Set.UNSPECIFIED, config()),
    (Set.VERIFY_AND_COMMIT, p4r.ForwardingPipelineConfig(p4_device_config=DEVICE_CONFIG)),
    (Set.VERIFY_AND_COMMIT, config(device_config=b"not json")),
    (Set.VERIFY_AND_COMMIT, config(device_config=b'{"broken": 1}')),
    (Set.VERIFY_AND_COMMIT, config(device_config=tmp_device_config(b"not json"))),
    (Set.VERIFY_AND_COMMIT, config(device_config=b"\x1a\x7f{")),
])
async def test_bad_pipeline_requests_are_invalid_argument(action, cfg) -> None:
    async with running_server() as h:
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await set_config(h, action, cfg)
        assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert h.device.pipeline is None


async def test_bad_config_keeps_the_running_pipeline() -> None:
    async with running_server() as h:
        await set_config(h, Set.VERIFY_AND_COMMIT, config(cookie=1))
        running = h.device.pipeline
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await set_config(h, Set.VERIFY_AND_COMMIT, config(device_config=b"not json"))
        assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert h.device.pipeline is running
        assert (await get_config(h, Get.COOKIE_ONLY)).cookie.cookie == 1


async def test_unknown_response_type_is_invalid_argument() -> None:
    """As PI's pipeline_config_get."""
    async with running_server() as h:
        await set_config(h, Set.VERIFY_AND_COMMIT)
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await get_config(h, 9)
        assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_commit_with_a_config_is_invalid_argument() -> None:
    """The spec's SetForwardingPipelineConfig RPC: COMMIT takes no config."""
    async with running_server() as h:
        await set_config(h, Set.VERIFY_AND_SAVE, config(cookie=5))
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await set_config(h, Set.COMMIT, config(cookie=6))
        assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert h.device.pipeline is None
        await h.stub.SetForwardingPipelineConfig(Set(device_id=DEVICE_ID, action=Set.COMMIT))
        assert (await get_config(h, Get.COOKIE_ONLY)).cookie.cookie == 5


async def test_wrong_device_id_is_not_found() -> None:
    async with running_server() as h:
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await set_config(h, Set.VERIFY_AND_COMMIT, device_id=DEVICE_ID + 1)
        assert exc.value.code() == grpc.StatusCode.NOT_FOUND


async def test_new_pipeline_wipes_entries_but_reconcile_keeps_them() -> None:
    async with running_server() as h:
        await set_config(h, Set.VERIFY_AND_COMMIT)
        await h.write(update("INSERT", flow_entry()))
        await set_config(h, Set.RECONCILE_AND_COMMIT, config(cookie=8))
        assert len(h.device.pipeline.tables["ingress.flow"]) == 1
        await set_config(h, Set.VERIFY_AND_COMMIT)
        assert len(h.device.pipeline.tables["ingress.flow"]) == 0
