"""Captions and posters on the pipeline side: what is asked of each backend, what is stored beside each video
(from a real engine's answer, or a poster made from a downloaded video when the backend sends none), and
the manifest's columns and gallery."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from connectors.storage.local import LocalStore
from connectors.talks.base import TalkResult
from connectors.talks.did import DidTalks, TalkmillTalks, talk_result
from talkmill.config import TalkConfig
from tasks.layout import beside_keys, sidecar_key
from tasks.manifest import ManifestRow, planned_row, to_csv, to_gallery, to_jsonl, write_manifest
import tasks.publish as publish_module
from tasks.publish import copy_repeats, publish_video
from tests.engine.helpers import Engine, StaticServer, serve_directory, start_s3_engine, wait_for
from tests.pipeline.test_talks_client import SOURCE_URL, script_for
from tests.s3server import S3Server

SAY = "Captions travel with every video. The gallery shows them."
JOE = {"provider": {"type": "talkmill", "voice_id": "en-US-joe"}}


def body_for(cls: type[DidTalks], **config: object) -> dict:
    return cls("http://talks.test").request_body(script_for("scr_1", config=config), SOURCE_URL, None)


# -- what each backend is asked -------------------------------------------------------------------


def test_captions_are_asked_for_by_default_and_never_sent_as_config() -> None:
    for cls in (DidTalks, TalkmillTalks):
        assert body_for(cls)["script"]["subtitles"] is True
        off = body_for(cls, captions=False)
        assert off["script"]["subtitles"] is False and "captions" not in off["config"]


def test_the_captions_setting_keeps_default_scripts_as_they_were() -> None:
    assert TalkConfig().as_request() == {} and TalkConfig(captions=True).as_request() == {}
    assert TalkConfig(captions=False).as_request() == {"captions": False}
    assert TalkConfig(subtitles_burn=True).as_request() == {"subtitles_burn": True}


def test_d_id_gets_no_burn_in_and_hears_no_warning_about_captions(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, "talkmill.talks"):
        body = body_for(DidTalks, captions=False, subtitles_burn=True)
    assert body["config"] == {}
    assert [r.getMessage().split()[0] for r in caplog.records] == ["config.subtitles_burn"]
    assert body_for(TalkmillTalks, subtitles_burn=True)["config"] == {"subtitles_burn": True}


def test_results_read_our_engines_files_and_do_without_them_from_d_id() -> None:
    ours = talk_result({"id": "tlk_1", "status": "done", "result_url": "https://r/v.mp4",
                        "subtitles": {"vtt_url": "https://r/c.vtt", "srt_url": "https://r/c.srt"},
                        "poster_url": "https://r/p.jpg"})  # fmt: skip
    assert ours.beside() == {"vtt": "https://r/c.vtt", "srt": "https://r/c.srt", "poster": "https://r/p.jpg"}
    assert TalkResult.from_record(ours.to_record()) == ours
    cloud = talk_result({"id": "tlk_2", "status": "done", "result_url": "https://r/v.mp4"})
    assert cloud.beside() == {}
    assert set(cloud.to_record()) == {"id", "status", "result_url", "duration", "error"}
    odd = talk_result({"id": "tlk_3", "status": "done", "result_url": "u",
                       "subtitles": {"reason": "no words"}, "poster_url": 7})  # fmt: skip
    assert odd.beside() == {}


# -- stored beside the video ----------------------------------------------------------------------


def tiny_mp4(seconds: float = 2.0, fps: int = 25) -> bytes:
    """A real H.264 video whose frames brighten over time (the poster's frame can be told by its grey)."""
    out = io.BytesIO()
    with av.open(out, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(int(seconds * fps)):
            grey = np.full((48, 64, 3), min(40 + 4 * i, 250), dtype=np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(grey, format="rgb24")))
        container.mux(stream.encode())
    return out.getvalue()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StaticServer]:
    root = tmp_path_factory.mktemp("files")
    (root / "video.mp4").write_bytes(tiny_mp4())
    Image.new("RGB", (64, 48), "teal").save(root / "poster.jpg", "JPEG")
    server = serve_directory(root)
    yield server
    server.server.shutdown()


def row_for(script_id: str, video_key: str, **fields: object) -> ManifestRow:
    return planned_row("run-1", script_for(script_id, **fields), video_key)


def publish(result: TalkResult, row: ManifestRow, store: LocalStore, base_url: str) -> None:
    async def go() -> None:
        async with DidTalks(base_url) as talks:
            await publish_video(result, script_for(row.script_id), row, talks, store)

    asyncio.run(go())


def test_a_backend_without_a_poster_gets_one_from_its_video(files: StaticServer, tmp_path: Path) -> None:
    store, row = LocalStore(tmp_path / "out"), row_for("scr_cloud", "note/001-cloud.mp4")
    spooled = lambda: set(Path(tempfile.gettempdir()).glob("talkmill-video-*.mp4"))  # noqa: E731
    before = spooled()  # other runs on this machine may be spooling now
    publish(TalkResult("tlk_c", "done", files.url("video.mp4"), 2.0), row, store, files.base)
    assert row.status == "done" and row.poster_key == "note/001-cloud.jpg"
    assert row.captions_vtt_key is None and row.captions_srt_key is None  # D-ID's cloud: no captions
    poster = Image.open(io.BytesIO(store.get_bytes(row.poster_key)))
    assert (poster.format, poster.size) == ("JPEG", (64, 48))
    grey = float(np.asarray(poster.convert("L")).mean())
    assert 40 + 4 * 22 < grey < 40 + 4 * 30, grey  # the frame ~1 s in (25 fps), not the first or last
    assert spooled() <= before, "the spooled copy is removed"


def test_missing_files_beside_are_left_out_or_made(files: StaticServer, tmp_path: Path) -> None:
    store, row = LocalStore(tmp_path / "out"), row_for("scr_gone", "note/002-gone.mp4")
    result = TalkResult("tlk_g", "done", files.url("video.mp4"), 2.0, vtt_url=files.url("gone.vtt"),
                        poster_url=files.url("gone.jpg"))  # fmt: skip
    publish(result, row, store, files.base)
    assert row.status == "done" and store.exists(row.video_key)
    assert row.captions_vtt_key is None
    assert row.poster_key == "note/002-gone.jpg"  # the backend's poster is gone: one of our own instead
    poster = Image.open(io.BytesIO(store.get_bytes(row.poster_key)))
    assert poster.size == (64, 48) and float(np.asarray(poster.convert("L")).mean()) > 100  # a frame ~1 s in


def test_a_backends_poster_is_stored_and_the_video_not_spooled(
    files: StaticServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spools: list[object] = []
    real = publish_module._Spool
    monkeypatch.setattr(publish_module, "_Spool", lambda suffix: spools.append(suffix) or real(suffix))
    store, row = LocalStore(tmp_path / "out"), row_for("scr_own", "note/003-own.mp4")
    publish(TalkResult("tlk_o", "done", files.url("video.mp4"), 2.0, poster_url=files.url("poster.jpg")),
            row, store, files.base)  # fmt: skip
    assert row.poster_key == "note/003-own.jpg" and spools == []
    assert store.get_bytes(row.poster_key) == (files.root / "poster.jpg").read_bytes()


def test_repeats_get_copies_of_the_captions_and_poster(files: StaticServer, tmp_path: Path) -> None:
    store, first = LocalStore(tmp_path / "out"), row_for("scr_rep", "note/001-rep.mp4")
    publish(TalkResult("tlk_r", "done", files.url("video.mp4"), 2.0), first, store, files.base)
    store.put_bytes(beside_keys(first.video_key)["vtt"], b"WEBVTT\n")
    first.captions_vtt_key = beside_keys(first.video_key)["vtt"]
    repeat = row_for("scr_rep", "note/002-rep.mp4")
    copy_repeats.fn([(script_for("scr_rep"), repeat)], [first], store)
    assert (repeat.captions_vtt_key, repeat.poster_key) == ("note/002-rep.vtt", "note/002-rep.jpg")
    assert store.get_bytes(repeat.poster_key) == store.get_bytes(first.poster_key)


# -- the manifest and gallery ---------------------------------------------------------------------


def test_the_manifest_has_the_new_columns_and_the_slide(tmp_path: Path) -> None:
    deck = row_for("scr_s", "deck/003-s.mp4", metadata={"slide": "3"})
    plain = row_for("scr_p", "note/001-p.mp4")
    assert (deck.slide, plain.slide) == (3, None)
    header = to_csv([deck]).splitlines()[0].split(",")
    assert {"captions_vtt_key", "captions_srt_key", "poster_key", "slide"} <= set(header)
    assert json.loads(to_jsonl([deck]))["slide"] == 3


def test_the_gallery_video_has_its_poster_and_a_captions_track() -> None:
    row = row_for("scr_g", "guide/001-g.mp4", voice=_voice("fr-FR-ff_siwis"))
    row.finish("done", captions_vtt_key="guide/001-g.vtt", captions_srt_key="guide/001-g.srt",
               poster_key="guide/001-g.jpg")
    page = to_gallery([row], "runs/run-1/gallery.html")
    assert 'poster="../../guide/001-g.jpg"' in page
    assert '<track kind="captions" srclang="fr-FR" label="fr-FR" src="../../guide/001-g.vtt" default>' in page
    bare = row_for("scr_b", "guide/002-b.mp4")
    bare.finish("done")
    assert "<track" not in to_gallery([bare], "runs/run-1/gallery.html")


def test_a_video_made_by_an_earlier_run_keeps_its_captions_in_the_manifest(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "out")
    row = row_for("scr_old", "note/001-old.mp4")
    row.finish("skipped_existing")
    for key in beside_keys(row.video_key).values():
        store.put_bytes(key, b"x")
    write_manifest(store, "run-2", [row])
    (line,) = store.get_bytes("runs/run-2/manifest.jsonl").decode().splitlines()
    assert json.loads(line)["captions_srt_key"] == "note/001-old.srt" and row.poster_key == "note/001-old.jpg"


def _voice(voice_id: str):  # noqa: ANN202
    from talkmill.models import Voice, VoiceProvider

    return Voice(provider=VoiceProvider(type="talkmill", voice_id=voice_id))


# -- a real engine ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def s3_engine(tmp_path_factory: pytest.TempPathFactory, seaweedfs: S3Server) -> Iterator[Engine]:
    started = start_s3_engine(tmp_path_factory.mktemp("pipeline-captions") / "data", seaweedfs,
                              "s3://inbox/engine-results")
    yield started
    started.kill()


def test_our_engines_captions_and_poster_are_stored_beside_the_video(
    s3_engine: Engine, static_server: StaticServer, tmp_path: Path
) -> None:
    script = script_for("scr_engine", SAY, voice=_voice("en-US-joe"))
    store, row = LocalStore(tmp_path / "out"), planned_row("run-1", script, "note/001-engine.mp4")

    async def go() -> None:
        async with TalkmillTalks(s3_engine.url, s3_engine.key) as talks:
            ref = await talks.create(script, static_server.url("grace_hopper.jpg"), None)
            with s3_engine.client() as client:
                await asyncio.to_thread(wait_for, client, ref.id, timeout=300)
            result = await talks.wait(ref.id, poll_interval=0.2, max_interval=1, timeout=60)
            await publish_video(result, script, row, talks, store)

    asyncio.run(go())
    assert row.status == "done", row
    keys = (row.captions_vtt_key, row.captions_srt_key, row.poster_key)
    assert keys == tuple(beside_keys(row.video_key).values())
    vtt = store.get_bytes(row.captions_vtt_key).decode()
    assert vtt.startswith("WEBVTT") and "Captions travel" in vtt
    assert " --> " in store.get_bytes(row.captions_srt_key).decode().replace(",", ".")
    assert Image.open(io.BytesIO(store.get_bytes(row.poster_key))).format == "JPEG"
    sidecar = json.loads(store.get_bytes(sidecar_key(row.video_key)))
    assert set(sidecar["result"]) >= {"vtt_url", "srt_url", "poster_url"}
