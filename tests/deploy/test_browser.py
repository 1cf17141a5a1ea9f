"""A real browser (Debian's headless Chromium over the DevTools Protocol) on what a user opens: the Prefect
UI of `talkmill serve`, and the gallery of a run started through it, every video in it playable."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.browser import CHROMIUM, chromium
from tests.deploy.conftest import Service
from tests.deploy.prefect_server import wait_final
from tests.engine.helpers import serve_directory

pytestmark = pytest.mark.skipif(not shutil.which(CHROMIUM), reason="Debian's chromium is not installed")
TWO_SCRIPTS = "# One\n\nThe first video. It is short.\n\n# Two\n\nThe second video. Also short.\n"
VIDEOS = """[...document.querySelectorAll('video')].map(v => ({
    src: v.currentSrc, readyState: v.readyState, duration: v.duration, error: v.error && v.error.code}))"""


@pytest.fixture(scope="module")
def gallery(service: Service, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A two-script run started through the API; its output served over http://127.0.0.1."""
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    work = tmp_path_factory.mktemp("browser-run")
    (work / "two.md").write_text(TWO_SCRIPTS)
    with temporary_settings(updates={PREFECT_API_URL: service.prefect.api_url}):
        run = run_deployment("content_to_video/content-to-video", timeout=0, as_subflow=False,
                             parameters={"sources": [str(work / "two.md")], "output": str(work / "out")})
    assert wait_final(service.prefect, str(run.id), 180)["state_type"] == "COMPLETED"
    (manifest,) = (work / "out" / "runs").glob("*/manifest.jsonl")
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    server = serve_directory(work / "out")
    yield {"url": server.url(f"runs/{manifest.parent.name}/gallery.html"), "rows": rows}
    server.server.shutdown()


def test_the_prefect_ui_lists_the_deployments(service: Service, tmp_path: Path) -> None:
    async def visit() -> str:
        async with chromium(tmp_path / "profile") as page:
            await page.goto(f"{service.prefect.url}/deployments")
            return await page.wait_for(
                "document.body.innerText.includes('content-to-video') && document.body.innerText", 60)

    text = asyncio.run(visit())
    assert "content-to-video" in text and "bucket-watch" in text


def test_the_gallery_has_one_playable_video_per_script(gallery: dict[str, Any], tmp_path: Path) -> None:
    async def visit() -> list[dict[str, Any]]:
        async with chromium(tmp_path / "profile") as page:
            await page.goto(gallery["url"])
            await page.wait_for(f"document.querySelectorAll('video').length === {len(gallery['rows'])} && "
                                "[...document.querySelectorAll('video')].every(v => v.readyState >= 1 || v.error)", 30)
            return await page.evaluate(VIDEOS)

    videos = asyncio.run(visit())
    assert len(gallery["rows"]) == 2 and [row["status"] for row in gallery["rows"]] == ["done", "done"]
    assert len(videos) == 2, videos
    for video, row in zip(videos, gallery["rows"]):
        assert video["error"] is None and video["readyState"] >= 1 and video["duration"] > 0, video
        assert video["src"].endswith(row["video_key"])
        assert abs(video["duration"] - row["actual_seconds"]) < 0.5, (video, row["actual_seconds"])


POSTERS_AND_TRACKS = """Promise.all([...document.querySelectorAll('video')].map(async v => {
    const track = v.querySelector('track[kind=captions]');
    const poster = v.getAttribute('poster') && await fetch(v.poster).then(r => r.ok && r.headers.get('content-type'));
    const cues = v.textTracks.length && v.textTracks[0].cues
        ? [...v.textTracks[0].cues].map(c => c.getCueAsHTML().textContent) : [];
    return {poster, posterSrc: v.poster, track: track && track.src, trackState: track && track.readyState,
            srclang: track && track.srclang, isDefault: track && track.default, cues};
}))"""


def _gallery_media(gallery: dict[str, Any], tmp_path: Path, tracks: bool) -> list[dict[str, Any]]:
    async def visit() -> list[dict[str, Any]]:
        async with chromium(tmp_path / "profile") as page:
            await page.goto(gallery["url"])
            loaded = ("[...document.querySelectorAll('track')].every(t => t.readyState >= 2)" if tracks
                      else "true")  # fmt: skip
            count = f"document.querySelectorAll('video').length === {len(gallery['rows'])}"
            await page.wait_for(f"{count} && {loaded}", 30)
            return await page.evaluate(POSTERS_AND_TRACKS)

    return asyncio.run(visit())


def test_the_gallery_shows_each_videos_poster(gallery: dict[str, Any], tmp_path: Path) -> None:
    media = _gallery_media(gallery, tmp_path, tracks=False)
    for item, row in zip(media, gallery["rows"]):
        assert row["poster_key"] and item["posterSrc"].endswith(row["poster_key"]), (item, row)
        assert item["poster"] == "image/jpeg", item


def test_the_gallery_has_a_captions_track_per_video(gallery: dict[str, Any], tmp_path: Path) -> None:
    media = _gallery_media(gallery, tmp_path, tracks=True)
    for item, row in zip(media, gallery["rows"]):
        assert row["captions_vtt_key"] and item["track"].endswith(row["captions_vtt_key"]), (item, row)
        assert (item["trackState"], item["isDefault"], item["srclang"]) == (2, True, "en-US"), item
        assert " ".join(item["cues"]).split() == row["script_text"].split(), item
