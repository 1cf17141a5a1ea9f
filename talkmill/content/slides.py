"""PowerPoint (.pptx) → one section per slide, read with python-pptx.

A slide is spoken from its speaker notes when it has any (what the presenter would say), else from its
own text: the title, then every other text box in reading order (top to bottom, then left to right).
Tables, charts and pictures are not read; hidden slides and slides with nothing to say are skipped. The
slide's title is the section's title and its number (as PowerPoint counts, hidden ones included) is
metadata["slide"].
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from talkmill.content.office import open_package, sniff_package, unreadable
from talkmill.content.text import as_sentence, tidy
from talkmill.models import Section

WHAT = "PowerPoint (.pptx)"


def sniff(head: bytes) -> bool:
    return sniff_package(head, b"ppt/")


def parse(data: bytes, uri: str) -> tuple[str | None, list[Section]]:
    if not data.strip():
        return None, []  # an empty file: refused like every format's, as nothing to read aloud
    deck = open_deck(data, uri)
    try:  # slides, notes and properties are parsed as they are first read
        sections = [section for number, slide in enumerate(deck.slides, start=1)
                    if not _hidden(slide) and (section := slide_section(slide, number))]
        return tidy(deck.core_properties.title or "") or None, sections
    except Exception as error:  # a damaged slide or notes part: the same refusal as a damaged package
        raise unreadable(uri, WHAT, error) from error


def open_deck(data: bytes, uri: str) -> Any:
    from pptx import Presentation  # imported here: only decks need it

    return open_package(data, uri, WHAT, Presentation)


def slide_section(slide: Any, number: int) -> Section | None:
    """The slide as a section, None when it has nothing to read aloud."""
    title_shape = slide.shapes.title
    has_title = title_shape is not None and title_shape.has_text_frame
    title = tidy(title_shape.text_frame.text) if has_title else ""
    spoken = _notes(slide) or _slide_text(slide, title_shape, title)
    if not spoken:
        return None
    return Section(title=title or None, text=spoken, metadata={"slide": str(number)})


def _hidden(slide: Any) -> bool:
    return slide._element.get("show") in ("0", "false")


def _notes(slide: Any) -> str:
    if not slide.has_notes_slide or slide.notes_slide.notes_text_frame is None:
        return ""
    paragraphs = (tidy(p.text) for p in slide.notes_slide.notes_text_frame.paragraphs)
    return "\n\n".join(p for p in paragraphs if p)


def _slide_text(slide: Any, title_shape: Any, title: str) -> str:
    """The title as a sentence, then each paragraph of the other text boxes in reading order."""
    lines = [as_sentence(title)] if title else []
    for shape in sorted(_text_shapes(slide.shapes), key=_reading_position):
        if title_shape is not None and shape.shape_id == title_shape.shape_id:
            continue
        lines += [as_sentence(text) for p in shape.text_frame.paragraphs if (text := tidy(p.text))]
    return "\n\n".join(lines)


def _text_shapes(shapes: Any) -> Iterator[Any]:
    """Shapes with text, inside groups too; tables, charts and pictures have none to read, and a slide's
    footer, date and number are not part of what it says."""
    from pptx.enum.shapes import PP_PLACEHOLDER
    from pptx.shapes.group import GroupShape

    furniture = (PP_PLACEHOLDER.FOOTER, PP_PLACEHOLDER.DATE, PP_PLACEHOLDER.SLIDE_NUMBER)
    for shape in shapes:
        if isinstance(shape, GroupShape):
            yield from _text_shapes(shape.shapes)
        elif shape.has_text_frame and not _is_one_of(shape, furniture):
            yield shape


def _is_one_of(shape: Any, placeholder_types: tuple[Any, ...]) -> bool:
    return shape.is_placeholder and shape.placeholder_format.type in placeholder_types


def _reading_position(shape: Any) -> tuple[int, int]:
    return (shape.top or 0, shape.left or 0)  # a placeholder may inherit its place: None
