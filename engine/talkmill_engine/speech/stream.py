"""Speech that arrives a piece (a sentence) at a time while its engine speaks it: the renderer animates
the first sentences while the next ones are spoken (bench/engine_speed.py).

The engine runs on a thread of its own ahead of the renderer; onnxruntime and espeak-ng release the GIL
while they work, so speech and frames share the cores.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from itertools import chain

import numpy as np

from talkmill_engine.speech.timing import Phone, Speech, SpeechBuilder

Piece = tuple[np.ndarray, list[Phone]]  # a piece's samples, and its phones from the piece's own start
_END = object()  # the queue's end marker


@dataclass(frozen=True)
class SpeechStream:
    sample_rate: int
    pieces: Iterable[Piece]  # spoken lazily, as it is iterated (once)
    voice_id: str | None = None
    normalise: bool = True  # SpeechBuilder's gain; a decoded audio file is kept as it is

    @classmethod
    def of(cls, speech: Speech) -> SpeechStream:
        """A whole Speech as a stream of one piece, as it is."""
        return cls(speech.sample_rate, [(speech.samples, speech.phones)], speech.voice_id, normalise=False)

    def padded(self, seconds: float) -> SpeechStream:
        """The same speech followed by `seconds` of silence (config.pad_audio)."""
        silence = np.zeros(int(round(seconds * self.sample_rate)), dtype=np.float32)
        return replace(self, pieces=chain(self.pieces, [(silence, [])]))

    def checked(self, check: Callable[[Speech], None]) -> SpeechStream:
        """The same stream; `check` sees the whole speech after the last piece, and may raise."""
        return replace(self, pieces=_checked(self, check))

    def collect(self) -> Speech:
        """The whole speech, spoken here and now."""
        builder = self._builder()
        for samples, phones in self.pieces:
            builder.add(samples, phones)
        return self._speech(builder)

    def arrivals(self) -> Arrivals:
        """Starts speaking on a thread; iterate the result for the speech as it grows."""
        return Arrivals(self)

    def _builder(self) -> SpeechBuilder:
        return SpeechBuilder(self.sample_rate, self.normalise)

    def _speech(self, builder: SpeechBuilder) -> Speech:
        speech = builder.speech()
        speech.voice_id = self.voice_id
        return speech


def _checked(stream: SpeechStream, check: Callable[[Speech], None]) -> Iterator[Piece]:
    builder = stream._builder()
    for samples, phones in stream.pieces:
        builder.add(samples, phones)
        yield samples, phones
    check(builder.speech())


class Arrivals:
    """The speech known so far, each time more of it arrives, with whether it is now whole: (Speech, bool).
    Pieces that came while the consumer was busy arrive together. `waited` is the consumer's time spent
    waiting for speech. Use as a context manager: leaving it early stops the engine after its current piece.
    An engine's exception is raised in the consumer."""

    def __init__(self, stream: SpeechStream) -> None:
        self._stream = stream
        self._queue: queue.Queue[object] = queue.Queue()  # unbounded: the speaker never waits for frames
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._speak, name="speech", daemon=True)
        self.waited = 0.0
        self._thread.start()

    def _speak(self) -> None:
        try:
            for piece in self._stream.pieces:
                if self._stop.is_set():
                    return
                self._queue.put(piece)
            self._queue.put(_END)
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, which raises it
            self._queue.put(e)

    def __iter__(self) -> Iterator[tuple[Speech, bool]]:
        builder = self._stream._builder()
        while True:
            items = self._next_items()
            for item in items:
                if isinstance(item, BaseException):
                    raise item
            whole = items[-1] is _END
            for samples, phones in items[:-1] if whole else items:
                builder.add(samples, phones)
            yield self._stream._speech(builder), whole
            if whole:
                return

    def _next_items(self) -> list[object]:
        """The next piece (waiting for it) and any others already spoken."""
        began = time.perf_counter()
        items = [self._queue.get()]
        self.waited += time.perf_counter() - began
        while items[-1] is not _END and not isinstance(items[-1], BaseException):
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return items

    def __enter__(self) -> Arrivals:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()  # at most the piece being spoken: the next talk gets the cores to itself
