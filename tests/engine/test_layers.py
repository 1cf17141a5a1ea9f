"""The engine's layers, checked in a fresh process: the API process (api → jobs) validates talks and lists
voices without importing the renderer or any heavy media library; those load in the worker processes."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

HEAVY = ("cv2", "mediapipe", "piper", "onnxruntime", "onnx", "av", "pocketsphinx")
ROOT = Path(__file__).resolve().parents[2]

API_PROCESS = textwrap.dedent(
    """
    import json, sys
    from fastapi.testclient import TestClient
    from talkmill_engine.api.app import create_app
    from talkmill_engine.settings import EngineSettings

    settings = EngineSettings(data_dir=sys.argv[1], workers=0, keys=["k"],
                              allowed_input_networks="127.0.0.1/32")
    answers = {}
    with TestClient(create_app(settings), headers={"Authorization": "Bearer k"}) as client:
        answers["voices"] = len(client.get("/tts/voices").json())
        talk = {"source_url": "http://127.0.0.1:9/portrait.png", "driver_url": "bank://lively",
                "script": {"type": "text", "input": "Guten Tag!",
                           "provider": {"type": "microsoft", "voice_id": "de-DE-KatjaNeural",
                                        "voice_config": {"rate": "+10%"}}}}
        answers["created"] = client.post("/talks", json=talk).status_code
        talk["script"]["provider"]["voice_id"] = "xx-XX-NobodyNeural"
        answers["refused"] = client.post("/talks", json=talk).json()["details"]["field"]
    loaded = sorted(name for name in sys.modules
                    if name.startswith("talkmill_engine.render") or name.split(".")[0] in sys.argv[2:])
    print(json.dumps({"answers": answers, "loaded": loaded}))
    """
)


def test_the_api_process_imports_no_render_module(tmp_path: Path) -> None:
    command = [sys.executable, "-c", API_PROCESS, str(tmp_path / "engine"), *HEAVY]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["answers"] == {"voices": report["answers"]["voices"], "created": 201,
                                 "refused": "script.provider.voice_id"}  # fmt: skip
    assert report["answers"]["voices"] > 50  # joe and espeak-ng's voices, listed by the API process
    assert report["loaded"] == [], "the API process imported " + ", ".join(report["loaded"])

