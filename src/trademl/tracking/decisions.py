"""The decision history of a registered model: an append-only log that cannot overflow, written
with compare-and-set, and the champion it implies.

Each decision (registration, promotion, rejection, rollback, revert) is one version of a
companion registered model ``<name>.trademl-history``, its fields in version tags (every value
far below the 5,000 characters SQL backends allow; long reasons are split). MLflow numbers
versions atomically, so a decision is never lost; each one also records the number of the
decision it followed (``expects``), and only the first decision written after a given one
counts: when two processes decide at once, the later one sees its decision void and decides
again on the new state (compare-and-set on the head of the log).

The log is written before the alias moves. A decision whose alias move fails is reverted by a
compensating decision; one whose process died before the move stays ``applied = false`` and
:func:`reconcile` (run before every decision) moves the alias as it says. So the log and the
``champion`` alias always come back to one consistent pair, and a rollback finds the previous
champion by replaying the log, whatever happened in between.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from trademl.errors import ModelNotFoundError, TrackingError

if TYPE_CHECKING:
    from mlflow import MlflowClient

HISTORY_SUFFIX = ".trademl-history"
KIND_TAG = "trademl.kind"
KIND_HISTORY = "decision-history"
CHAMPION = "champion"
# Reason text per tag; SQL backends store tag values as VARCHAR(5000).
REASON_CHUNK_CHARS = 4000
REASON_MAX_CHARS = 40_000
APPEND_ATTEMPTS = 20
# Champion-changing actions and what they do to the stack of champions.
PUSH, POP, REVERT = "promoted", "rollback", "reverted"

FaultHook = Callable[[str], None]
# Tests inject a fault (an exception, or a process exit) at a named point of a decision.
fault_hook: FaultHook | None = None


def _fault(point: str) -> None:
    if fault_hook is not None:
        fault_hook(point)


@dataclass(frozen=True)
class Event:
    """One decision as logged.

    Attributes
    ----------
    seq : int
        Its place in the log (the history model's version number).
    expects : int
        The decision it followed (0 for the first); it counts only if that was the head.
    action : str
        registered, promoted, rejected, rollback or reverted.
    version : int
        The model version decided on (for ``reverted``: the champion restored, or 0 for none).
    previous : int or None
        The champion it replaced (promoted, rollback), or the decision undone (reverted).
    """

    seq: int
    expects: int
    action: str
    version: int
    previous: int | None
    reason: str
    at: str
    applied: bool

    def as_dict(self) -> dict[str, Any]:
        """The event as ``history()`` reports it."""
        out: dict[str, Any] = {
            "seq": self.seq,
            "at": self.at,
            "action": self.action,
            "version": self.version,
            "reason": self.reason,
        }
        if self.previous is not None:
            out["previous"] = self.previous
        return out


@dataclass
class Log:
    """The valid decisions of a model, oldest first, and the champion stack they imply."""

    events: list[Event]
    stacks: dict[int, tuple[int, ...]] = field(default_factory=dict)  # after each seq

    @property
    def head(self) -> int:
        """The seq of the last valid decision (0 when none)."""
        return self.events[-1].seq if self.events else 0

    @property
    def champions(self) -> tuple[int, ...]:
        """Champions, oldest first: the last serves, the one before is what rollback restores."""
        return self.stacks.get(self.head, ())

    @property
    def champion(self) -> int | None:
        """The champion the log says (None before any promotion)."""
        return self.champions[-1] if self.champions else None


def log_name(name: str) -> str:
    """The registered model holding ``name``'s decisions."""
    return f"{name}{HISTORY_SUFFIX}"


def is_history(model: Any) -> bool:
    """Whether a registered model is a decision log (hidden from model listings)."""
    return bool((getattr(model, "tags", None) or {}).get(KIND_TAG) == KIND_HISTORY) or str(
        getattr(model, "name", "")
    ).endswith(HISTORY_SUFFIX)


def _already_exists(error: Exception) -> bool:
    return getattr(error, "error_code", "") == "RESOURCE_ALREADY_EXISTS"


def ensure_log(client: MlflowClient, name: str) -> None:
    """Create ``name``'s decision log if it does not exist yet (racing creators are fine)."""
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(log_name(name))
        return
    except MlflowException:
        pass
    try:
        client.create_registered_model(
            log_name(name),
            tags={KIND_TAG: KIND_HISTORY},
            description=f"trademl: the decision history of {name} (one version per decision)",
        )
    except MlflowException as error:
        if not _already_exists(error):
            raise


def _parse(version: Any) -> Event:
    tags = dict(version.tags or {})
    parts = int(tags.get("reason.parts", "0"))
    reason = "".join(tags.get(f"reason.{i}", "") for i in range(parts))
    previous = tags.get("previous")
    return Event(
        seq=int(version.version),
        expects=int(tags.get("expects", "-1")),
        action=tags.get("action", ""),
        version=int(tags.get("version", "0")),
        previous=int(previous) if previous else None,
        reason=reason,
        at=tags.get("at", ""),
        applied=tags.get("applied") == "true",
    )


# Logged decisions never change (but for their ``applied`` flag): each process keeps those it
# read, per registry and model, and asks the registry only for newer ones.
_seen: dict[tuple[str, str], list[Event]] = {}
_seen_lock = threading.Lock()
_ensured: set[tuple[str, str]] = set()


def _registry_key(client: MlflowClient, name: str) -> tuple[str, str]:
    uri = getattr(client, "_registry_uri", None) or getattr(client, "tracking_uri", "")
    return str(uri), name


def _newer(client: MlflowClient, name: str, after: int) -> list[Event]:
    raw: list[Any] = []
    token = None
    while True:
        page = client.search_model_versions(
            f"name = '{log_name(name)}' AND version_number > {after}",
            max_results=1000,
            page_token=token,
        )
        raw.extend(page)
        token = getattr(page, "token", None)
        if not token:
            break
    return sorted((_parse(v) for v in raw), key=lambda e: e.seq)


def read_log(client: MlflowClient, name: str) -> Log:
    """The valid decisions of ``name`` (void ones, that lost a race, left out) and the champion
    stack after each."""
    key = _registry_key(client, name)
    with _seen_lock:
        known = list(_seen.get(key, []))
    known.extend(_newer(client, name, known[-1].seq if known else 0))
    with _seen_lock:
        _seen[key] = known
    log = Log([])
    stack: tuple[int, ...] = ()
    for event in known:
        if event.expects != log.head:
            continue  # written on a stale head: another decision came first
        if event.action == PUSH:
            if not stack and event.previous is not None:
                stack = (event.previous,)  # a champion from before the log (older registries)
            stack = stack if stack and stack[-1] == event.version else (*stack, event.version)
        elif event.action == POP:
            stack = stack[:-1]
        elif event.action == REVERT and event.previous is not None:
            stack = _before(log, event.previous)
        log.events.append(event)
        log.stacks[event.seq] = stack
    return log


def _remember_applied(client: MlflowClient, name: str, seq: int) -> None:
    key = _registry_key(client, name)
    with _seen_lock:
        _seen[key] = [replace(e, applied=True) if e.seq == seq else e for e in _seen.get(key, [])]


def _before(log: Log, seq: int) -> tuple[int, ...]:
    earlier = [e.seq for e in log.events if e.seq < seq]
    return log.stacks[earlier[-1]] if earlier else ()


def _tags(event: dict[str, Any], expects: int) -> dict[str, str]:
    reason = str(event["reason"])
    if len(reason) > REASON_MAX_CHARS:
        reason = reason[: REASON_MAX_CHARS - 14] + " …(truncated)"
    chunks = [reason[i : i + REASON_CHUNK_CHARS] for i in range(0, len(reason), REASON_CHUNK_CHARS)]
    tags = {
        "expects": str(expects),
        "action": str(event["action"]),
        "version": str(event["version"]),
        "at": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "applied": "false",
        "reason.parts": str(len(chunks)),
    }
    if event.get("previous") is not None:
        tags["previous"] = str(event["previous"])
    tags.update({f"reason.{i}": chunk for i, chunk in enumerate(chunks)})
    return tags


def append(
    client: MlflowClient, name: str, decide: Callable[[Log], dict[str, Any]]
) -> tuple[Event, Log]:
    """Log the decision ``decide(log)`` returns (action, version, previous, reason), taken on
    the current log; if another process logged one first, decide again on the new log.

    Returns the logged event and the log it was decided on.

    Raises
    ------
    TrackingError
        Still losing races after many attempts.
    """
    if _registry_key(client, name) not in _ensured:
        ensure_log(client, name)
        _ensured.add(_registry_key(client, name))
    for _ in range(APPEND_ATTEMPTS):
        log = read_log(client, name)
        event = decide(log)
        created = client.create_model_version(
            log_name(name), source=f"trademl-history:{name}", tags=_tags(event, log.head)
        )
        seq = int(created.version)
        after = read_log(client, name)
        mine = next((e for e in after.events if e.seq == seq), None)
        if mine is not None:
            return mine, log
    raise TrackingError(
        f"model {name!r}: {APPEND_ATTEMPTS} decisions in a row lost a race with other "
        "processes; try again"
    )


def mark_applied(client: MlflowClient, name: str, event: Event) -> None:
    """Record that ``event``'s alias move happened."""
    client.set_model_version_tag(log_name(name), str(event.seq), "applied", "true")
    _remember_applied(client, name, event.seq)


def _version(client: MlflowClient, name: str, seq: int) -> Any:
    return client.get_model_version(log_name(name), str(seq))


def alias_version(client: MlflowClient, name: str, alias: str = CHAMPION) -> int | None:
    """The version ``alias`` points at (None when unset)."""
    value = (client.get_registered_model(name).aliases or {}).get(alias)
    return int(value) if value is not None else None


def _move_alias(client: MlflowClient, name: str, champion: int | None) -> None:
    if champion is None:
        if alias_version(client, name) is not None:
            client.delete_registered_model_alias(name, CHAMPION)
    else:
        client.set_registered_model_alias(name, CHAMPION, str(champion))


def reconcile(client: MlflowClient, name: str) -> Log:
    """Finish a decision whose process died between logging it and moving the alias: the
    alias is moved as the log says. Returns the log."""
    log = read_log(client, name)
    pending = [e for e in log.events if not e.applied and e.action in (PUSH, POP, REVERT)]
    # Another process may have finished them since this one read them.
    pending = [e for e in pending if not _parse(_version(client, name, e.seq)).applied]
    if pending and alias_version(client, name) != log.champion:
        _move_alias(client, name, log.champion)
    for event in pending:
        mark_applied(client, name, event)
    return log


def decide_champion(
    client: MlflowClient, name: str, decide: Callable[[Log], dict[str, Any]]
) -> tuple[Event, Log]:
    """Log a champion-changing decision, then move the alias as the log now says.

    If the move fails, a ``reverted`` decision restores the previous champion in the log and
    the error propagates; if the process dies in between, :func:`reconcile` finishes the move.
    Returns the event and the log it was decided on.
    """
    reconcile(client, name)
    event, before = append(client, name, decide)
    try:
        _fault("logged")
        _move_alias(client, name, read_log(client, name).champion)
        _fault("moved")
    except BaseException as error:
        revert = {
            "action": REVERT,
            "version": before.champion or 0,
            "previous": event.seq,
            "reason": f"decision {event.seq} reverted: the alias move failed "
            f"({type(error).__name__})",
        }
        try:
            reverted, _ = append(client, name, lambda log: revert)
            _move_alias(client, name, read_log(client, name).champion)
            mark_applied(client, name, reverted)
        except Exception:  # the log still says the decision: reconcile rolls it forward
            pass
        raise
    mark_applied(client, name, event)
    settle(client, name)
    return event, before


def settle(client: MlflowClient, name: str, rounds: int = 3) -> None:
    """Point the alias at the log's champion again if a slower process moved it meanwhile."""
    for _ in range(rounds):
        champion = read_log(client, name).champion
        if alias_version(client, name) == champion:
            return
        _move_alias(client, name, champion)


def previous_champion(log: Log, name: str) -> tuple[int, int]:
    """(current champion, the one a rollback restores) according to ``log``.

    Raises
    ------
    ModelNotFoundError
        Fewer than two champions in the log: nothing to roll back to.
    """
    champions = log.champions
    if len(champions) < 2:
        current = f"champion version {champions[-1]}" if champions else "no champion"
        raise ModelNotFoundError(
            f"model {name!r}: {current} replaced no earlier champion; nothing to roll back to"
        )
    return champions[-1], champions[-2]
