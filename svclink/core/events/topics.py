"""Topic routing keys and binding patterns, matched exactly as a RabbitMQ topic exchange does.

RabbitMQ splits a key on ``.`` into words (the empty key has no words, ``"a."`` has two: ``a``
and the empty word). In a pattern the whole word ``*`` matches exactly one word and ``#``
matches zero or more; a ``*`` or ``#`` inside a longer word is an ordinary character. The
memory broker and handler dispatch use this one matcher, so they route like the real broker.
"""

from __future__ import annotations

import functools
import re

from ..errors import InvalidEvent

#: AMQP short strings (routing keys, queue and exchange names) hold at most 255 bytes
MAX_SHORTSTR = 255
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
#: what the AMQP clients (pamqp's check, so aio-pika's) accept in exchange and queue names
_NAME_RE = re.compile(r"[A-Za-z0-9_.:@#,/+ -]*")


def words(key: str) -> tuple[str, ...]:
    """The words of a routing key or pattern, split the way RabbitMQ splits them."""
    return tuple(key.split(".")) if key else ()


def matches(pattern: str, key: str) -> bool:
    """Whether binding ``pattern`` routes messages published with routing ``key``."""
    return _match(words(pattern), words(key))


@functools.lru_cache(maxsize=4096)
def _match(pattern: tuple[str, ...], key: tuple[str, ...]) -> bool:
    """Dynamic programming over (pattern position, key position): linear in both, whatever the ``#``s.

    ``reach[j]`` says whether the pattern words consumed so far can match the first ``j``
    words of the key.
    """
    reach = [True] + [False] * len(key)
    for word in pattern:
        if word == "#":
            nxt = reach[:]
            for j in range(1, len(key) + 1):
                nxt[j] = nxt[j] or nxt[j - 1]
        elif word == "*":
            nxt = [False, *reach[:-1]]
        else:
            nxt = [False, *(reach[j] and key[j] == word for j in range(len(key)))]
        reach = nxt
    return reach[len(key)]


def is_pattern(pattern: str) -> bool:
    """Whether ``pattern`` has a wildcard word, i.e. can match more than one key."""
    return any(w in ("*", "#") for w in words(pattern))


def utf8_size(what: str, value: str) -> int:
    """How many bytes ``value`` takes in UTF-8; a lone surrogate (which has none) is refused."""
    try:
        return len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidEvent(f"{what} is not valid Unicode text (it holds a lone surrogate)") from None


def _check_shortstr(what: str, value: object) -> str:
    if not isinstance(value, str):
        raise InvalidEvent(f"{what} must be a str, got {type(value).__name__}")
    if utf8_size(what, value) > MAX_SHORTSTR:
        raise InvalidEvent(f"{what} is longer than {MAX_SHORTSTR} bytes")
    if _CONTROL_RE.search(value):
        raise InvalidEvent(f"{what} contains a control character")
    return value


def check_event_type(event_type: object) -> str:
    """An event type is a routing key of non-empty dot-separated words with no wildcard word.

    RabbitMQ would accept ``"a..b"`` or ``"user.*"`` as keys, but as event types they are
    almost always a mistake (and ``*`` would never be matched literally by a pattern).
    A service publishes and consumes a handful of types over and over, so the verdict on a
    ``str`` is cached (only accepted types are: a refusal raises, and is not remembered).
    """
    if type(event_type) is str:
        return _event_type(event_type)
    return _check_event_type(event_type)


@functools.lru_cache(maxsize=1024)
def _event_type(event_type: str) -> str:
    return _check_event_type(event_type)


def _check_event_type(event_type: object) -> str:
    value = _check_shortstr("event type", event_type)
    parts = words(value)
    if not parts or any(not w for w in parts):
        raise InvalidEvent("event type must be dot-separated non-empty words, e.g. 'user.updated'")
    if any(w in ("*", "#") for w in parts):
        raise InvalidEvent("event type must not contain the wildcard words '*' or '#'")
    return value


def check_pattern(pattern: object) -> str:
    """A binding pattern: any short string without control characters (``""`` binds the empty key)."""
    return _check_shortstr("binding pattern", pattern)


def check_name(what: str, name: object, *, reserve: int = 0) -> str:
    """A queue or exchange name: a non-empty short string, not in the broker's ``amq.`` namespace.

    ``reserve`` bytes are kept free for the suffixes svclink derives (``.retry.<ms>``, ``.dead``).
    Like event types, accepted ``str`` names are cached: a publisher checks its exchange on
    every publish.
    """
    if type(name) is str:
        return _name(what, name, reserve)
    return _check_name(what, name, reserve)


@functools.lru_cache(maxsize=256)
def _name(what: str, name: str, reserve: int) -> str:
    return _check_name(what, name, reserve)


def _check_name(what: str, name: object, reserve: int) -> str:
    value = _check_shortstr(what, name)
    if not value:
        raise InvalidEvent(f"{what} must not be empty")
    if value.startswith("amq."):
        raise InvalidEvent(f"{what} must not start with 'amq.' (reserved by the broker)")
    if not _NAME_RE.fullmatch(value):
        raise InvalidEvent(f"{what} may hold only ASCII letters, digits, spaces and '_.:@#,/+-'")
    if len(value.encode("utf-8")) > MAX_SHORTSTR - reserve:
        raise InvalidEvent(f"{what} is longer than {MAX_SHORTSTR - reserve} bytes")
    return value
