"""Reading a Server-Sent Events stream line by line (the WHATWG rules, the parts HERO uses).
Pure: lines in, messages out."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SseMessage", "SseParser"]


@dataclass(frozen=True, slots=True)
class SseMessage:
    """One dispatched message. ``id`` is the last id seen on the stream so far (SSE keeps it
    across messages); ``data`` is empty for an id-only message (a position marker)."""

    event: str
    data: str
    id: str | None


class SseParser:
    """Feed lines without their line ending; a blank line ends a message. Comments are
    counted, not returned. ``max_data`` bounds what one message may hold."""

    def __init__(self, max_data: int = 16 * 1024 * 1024):
        self.max_data = max_data
        self.last_id: str | None = None
        self.comments = 0
        self._event = ""
        self._data: list[str] = []
        self._size = 0
        self._saw_id = False

    def feed(self, line: str) -> SseMessage | None:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            self.comments += 1
            return None
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._event = value
        elif name == "data":
            self._size += len(value) + 1
            if self._size > self.max_data:
                raise ValueError(f"an SSE message passed {self.max_data} characters")
            self._data.append(value)
        elif name == "id" and "\0" not in value:
            self.last_id = value
            self._saw_id = True
        return None  # "retry" and unknown fields are ignored

    def _dispatch(self) -> SseMessage | None:
        event, data, saw_id = self._event, "\n".join(self._data), self._saw_id
        had_data = bool(self._data)
        self._event, self._data, self._size, self._saw_id = "", [], 0, False
        if not had_data and not saw_id:
            return None
        return SseMessage(event=event or "message", data=data, id=self.last_id)
