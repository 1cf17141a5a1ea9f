"""Split: a Document's sections → Scripts, each at most `max_chars`, cut only between sentences.

Script ids are "scr_" + the first 16 hex of sha256 over a canonical JSON (sorted keys, no spaces, UTF-8)
of exactly what shapes the video: {text, presenter, voice provider, driver_url, talk config}. Titles,
output names and metadata are left out: they change no frame, so a re-run finds the stored video.

The presenter in the hash: for a local file, "sha256:<hex of its bytes>" and not its path, so the same
portrait gives the same id from any folder or machine, and replacing the image changes the id; for a URL,
the URL itself (nothing is fetched at plan time). Planning therefore reads local portraits, which also
checks they exist before any talk is created: regular files only, and never more than the contract's
image limit (a portrait named /dev/zero or a sparse terabyte is refused, not read).
"""

from __future__ import annotations

import hashlib
import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from sentencex import segment

from talkmill.config import PipelineConfig, is_url
from talkmill.content.files import read_capped
from talkmill.content.uris import local_path
from talkmill.errors import ConfigError, ContentError, CsvRowsError, RowProblem
from talkmill.models import Document, Script, Section, Voice, VoiceProvider
from talks_contract.limits import MAX_IMAGE_BYTES

CLAUSE_BREAK = re.compile(r"(?<=[,;:])\s+|\s+(?=[—–-]\s)")  # after , ; : or before a spaced dash


# --- splitting --------------------------------------------------------------------------------------


def split_text(text: str, max_chars: int, language: str = "en") -> list[str]:
    """Sentences packed into the fewest chunks of at most `max_chars`, then evened out (the smallest
    limit that keeps that count), so a long section does not end on a two-second stub. A sentence longer
    than `max_chars` alone is cut at clause punctuation, then between words."""
    if max_chars < 1:
        raise ConfigError(f"split.max_chars: must be at least 1, got {max_chars}")
    pieces: list[str] = []
    for sentence in sentences(text, language):
        pieces += [sentence] if len(sentence) <= max_chars else _cut_long(sentence, max_chars)
    if not pieces:
        return []
    count = len(_pack(pieces, max_chars))
    low, high = max(map(len, pieces)), max_chars
    while low < high:  # fewer characters per chunk never means fewer chunks, so bisect the limit
        middle = (low + high) // 2
        low, high = (low, middle) if len(_pack(pieces, middle)) == count else (middle + 1, high)
    return _pack(pieces, low)


def sentences(text: str, language: str = "en") -> list[str]:
    """Whitespace collapsed, then sentencex (rules only, no downloaded data); Dr., U.S., e.g. and 3.14
    do not end sentences."""
    normalized = " ".join(text.split())
    # sentencex knows "en", not "en-US" or "EN", and silently falls back to rules that split at "Dr."
    primary = language.strip().lower().replace("_", "-").split("-")[0]
    return [part.strip() for part in segment(primary, normalized) if part.strip()] if normalized else []


def _cut_long(sentence: str, max_chars: int) -> list[str]:
    pieces: list[str] = []
    for clause in CLAUSE_BREAK.split(sentence):
        if len(clause) <= max_chars:
            pieces.append(clause)
            continue
        for word in clause.split(" "):  # a single word past the limit (a long URL) is cut hard
            pieces += [word[start:start + max_chars] for start in range(0, len(word), max_chars)]
    return _pack([piece for piece in pieces if piece], max_chars)


def _pack(pieces: list[str], limit: int) -> list[str]:
    chunks: list[str] = []
    current = ""
    for piece in pieces:
        if current and len(current) + 1 + len(piece) <= limit:
            current = f"{current} {piece}"
        else:
            if current:
                chunks.append(current)
            current = piece
    return [*chunks, current] if current else chunks


# --- planning ---------------------------------------------------------------------------------------


def plan_scripts(document: Document, config: PipelineConfig) -> list[Script]:
    """Every section split and dressed with its settings (config defaults, then the section's CSV
    overrides). All problems (missing portraits, unfetched source rows) are reported together."""
    settings, problems = [], []
    presenters: dict[str, tuple[str, str]] = {}  # checked once per run, not once per row (10,000 rows, 1 portrait)
    for section in document.sections:
        try:
            settings.append(_settings(section, config, presenters))
        except ContentError as error:
            problems.append((section, str(error)))
    if problems:
        raise _plan_error(document, problems)
    scripts: list[Script] = []
    for index, (section, chosen) in enumerate(zip(document.sections, settings)):
        scripts += _section_scripts(document, index, section, chosen, config)
    return scripts


def _section_scripts(document: Document, index: int, section: Section, chosen: dict[str, Any],
                     config: PipelineConfig) -> list[Script]:
    chunks = split_text(section.text, config.split.max_chars, config.split.language)
    name = section.overrides.get("output_name")
    metadata = dict(section.metadata)
    if "id" in section.overrides:
        metadata["row_id"] = section.overrides["id"]
    if section.line is not None:
        metadata["line"] = str(section.line)
    return [
        Script(
            id=script_id(chunk, chosen["fingerprint"], chosen["voice"], chosen["driver_url"],
                         chosen["config"]),
            text=chunk, source=document.source, document_title=document.title, section_title=section.title,
            section_index=index, chunk_index=number, chunk_count=len(chunks), presenter=chosen["presenter"],
            voice=chosen["voice"], driver_url=chosen["driver_url"], config=chosen["config"],
            output_name=(f"{name}-{number + 1}" if len(chunks) > 1 else name) if name else None,
            metadata=metadata,
        )
        for number, chunk in enumerate(chunks)
    ]


def _settings(section: Section, config: PipelineConfig, presenters: dict[str, tuple[str, str]]) -> dict[str, Any]:
    """The section's settings; `presenters` caches each portrait's (reference, fingerprint) for the plan."""
    if not section.text.strip():
        raise ContentError("this row's source was not fetched; "
                           "ingest CSVs with tasks.ingest.ingest or ingest_source")
    chosen = section.overrides
    presenter = chosen.get("presenter_image") or config.presenter
    if presenter not in presenters:
        try:
            fingerprint = presenter_fingerprint(presenter)
        except ContentError as error:
            column = "presenter_image" if "presenter_image" in chosen else "presenter (config)"
            raise ContentError(f"{column}: {error}") from error
        presenters[presenter] = (presenter if is_url(presenter) else str(local_path(presenter).resolve()), fingerprint)
    reference, fingerprint = presenters[presenter]
    return {
        "presenter": reference,
        "fingerprint": fingerprint,
        "voice": _voice(chosen, config.voice),
        "driver_url": chosen.get("driver_url") or config.driver_url,
        "config": _talk_config(chosen, config),
    }


def _voice(chosen: dict[str, str], default: Voice) -> Voice:
    base = default.provider
    if not (chosen.get("voice_provider") or chosen.get("voice_id")):
        return default
    kind = chosen.get("voice_provider") or base.type
    # voice_config (style, rate, pitch) belongs to a provider's voices: drop it when the provider changes
    return Voice(provider=VoiceProvider(type=kind, voice_id=chosen.get("voice_id") or base.voice_id,
                                        voice_config=base.voice_config if kind == base.type else None))


def _talk_config(chosen: dict[str, str], config: PipelineConfig) -> dict[str, Any]:
    talk = config.talk_config.as_request()
    if "stitch" in chosen:
        talk["stitch"] = chosen["stitch"] == "true"
    if "result_format" in chosen:
        talk["result_format"] = chosen["result_format"]
    if "expression" in chosen:
        expression = {"start_frame": 0, "expression": chosen["expression"], "intensity": 1}
        talk["driver_expressions"] = {"expressions": [expression]}
    return talk


def _plan_error(document: Document, problems: list[tuple[Section, str]]) -> ContentError:
    if document.source.type == "csv":
        rows = []
        for section, message in problems:
            column, _, problem = message.partition(": ")
            rows.append(RowProblem(line=section.line or 0, column=column if problem else "source",
                                   problem=problem or message))
        return CsvRowsError(document.source.uri, rows)
    return ContentError(f"{document.source.uri}: {problems[0][1]}")


def script_id(text: str, presenter_fingerprint: str, voice: Voice, driver_url: str | None,
              config: dict[str, Any]) -> str:
    shaping = {"text": text, "presenter": presenter_fingerprint, "voice": voice.model_dump(mode="json"),
               "driver_url": driver_url, "config": config}
    canonical = json.dumps(shaping, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "scr_" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def presenter_fingerprint(presenter: str) -> str:
    """What identifies a portrait in script ids: the URL, or the sha256 of a local file's bytes."""
    if is_url(presenter):
        return presenter
    path = local_path(presenter).resolve()
    try:
        stat = path.stat()
        return "sha256:" + _file_sha256(path, stat.st_mtime_ns, stat.st_size)
    except FileNotFoundError as error:
        raise ContentError(
            f"{presenter!r}: portrait not found ({error.strerror}); give an existing image file or a URL"
        ) from error
    except OSError as error:  # not a regular file, no permission
        raise ContentError(f"{presenter!r}: cannot read the portrait ({error.strerror or error})") from error


@lru_cache(maxsize=128)
def _file_sha256(path: Path, mtime_ns: int, size: int) -> str:  # mtime and size key the cache
    data = read_capped(path, MAX_IMAGE_BYTES)
    if len(data) > MAX_IMAGE_BYTES:
        raise ContentError(f"{str(path)!r}: larger than {MAX_IMAGE_BYTES // 2**20} MB, the most a portrait "
                           f"may be ({MAX_IMAGE_BYTES:,} bytes)")
    return hashlib.sha256(data).hexdigest()


@task(cache_policy=NO_CACHE)  # a cache key would hash the whole document, for a result never reused
def plan(document: Document, config: PipelineConfig) -> list[Script]:
    """Pure task (no retries): a planning error is in the content, and it would fail the same again."""
    return plan_scripts(document, config)
