"""The one error hierarchy of `catalog`; only the CLI turns these into messages and exit codes.

    CatalogError
    ├── ConfigError              bad or missing settings (exit 2)
    │   ├── Untranslatable       a cron expression the target (systemd, Kubernetes) cannot express
    │   └── UnknownRevision      `catalog db upgrade REV` names no migration (exit 2)
    ├── BadCursor                an --after cursor that no listing in this order gave out (exit 2)
    ├── BadFilter                a filter names nothing in the catalog; an ambiguous id (exit 2)
    ├── NoSuchItem               no item with the id asked for
    ├── DatabaseError            the catalog database cannot be reached or used
    │   ├── CatalogMissing       the catalog named does not exist (only a sync creates one)
    │   └── SchemaTooNew         the catalog was migrated by a newer catalog than this one
    ├── LockHeld                 another run of the same job holds its lock (exit 75)
    ├── MassDeleteRefused        a full sync would mark too much of a library missing
    ├── PushRefused              a push would change more items than [push] max_items allows
    ├── RulesError               a tag rule (rules file or command line) is invalid (exit 2)
    ├── Interrupted              SIGINT / SIGTERM arrived (exit 130 / 143)
    ├── SourceError              the media server failed us
    │   ├── SourceUnreachable    connection refused, DNS, timeouts after every retry
    │   ├── SourceAuthError      the server refused the token (401 / 403)
    │   └── SourceResponseError  bad status after retries, undecodable or oversized answer
    └── TaggerError              the tagging service failed us
        ├── TaggerAuthError      the service refused the token (401 / 403): the run stops
        ├── TaggerCallFailed     one item's call failed after every retry (the item fails)
        │   └── MalformedAnswer  the service answered, but not with tags (the item fails)
        └── CircuitOpen          too many calls failed in a row, too often: the run stops (exit 3)

Messages are single lines meant for a user; they never contain a secret. Which of these stand
for an HTTP peer's failures is declared once per client as an `ErrorFamily` (used by
`catalog.http.Peer`): SOURCE_ERRORS, TAGGER_ERRORS.
"""

from __future__ import annotations

import signal
from typing import NamedTuple


class CatalogError(Exception):
    """Base of every error `catalog` reports to its user."""

    exit_code = 1


class ConfigError(CatalogError):
    """A setting is missing or invalid."""

    exit_code = 2


class Untranslatable(ConfigError):
    """A cron expression that the target (systemd, cron, Kubernetes) cannot express exactly."""


class UnknownRevision(ConfigError):
    """`catalog db upgrade REVISION` names no migration this program ships."""


class BadCursor(CatalogError):
    """An --after cursor is malformed, or comes from a listing in another order."""

    exit_code = 2

    def __init__(self, reason: str) -> None:
        super().__init__(f"invalid --after cursor: {reason}; start again without --after")


class BadFilter(CatalogError):
    """A listing filter names a server or library the catalog does not have, or is ambiguous."""

    exit_code = 2


class NoSuchItem(CatalogError):
    """No item in the catalog has the id asked for."""


class DatabaseError(CatalogError):
    """The catalog database cannot be reached or used."""


class CatalogMissing(DatabaseError):
    """The catalog database named does not exist: only a sync (or the demo) creates one, so a
    mistyped path is an error rather than a new empty catalog."""


class SchemaTooNew(DatabaseError):
    """The catalog's schema revision is one this program does not know: a newer one made it."""


class LockHeld(CatalogError):
    """Another run of the same job against the same server holds the lock."""

    exit_code = 75


class MassDeleteRefused(CatalogError):
    """A full sync would mark more of a library missing than the configured share allows."""


class PushRefused(CatalogError):
    """A push would change more items than `[push] max_items` allows, without --allow-many."""


class RulesError(CatalogError):
    """A tag rule is invalid: a rules-file line, a cycle, or a rename of a tag that isn't there."""

    exit_code = 2


class Interrupted(CatalogError):
    """The run was stopped by a signal; committed work stays."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        self.signum = signum
        super().__init__(f"interrupted by {signal.Signals(signum).name}")

    @property
    def exit_code(self) -> int:  # type: ignore[override]
        return 128 + self.signum


class SourceError(CatalogError):
    """The media server could not give us what we asked for."""


class SourceUnreachable(SourceError):
    """The media server did not answer (refused, unresolvable, timed out) after every retry."""


class SourceAuthError(SourceError):
    """The media server refused the token."""


class SourceResponseError(SourceError):
    """The media server answered with an error status, undecodable JSON or an oversized page."""


class TaggerError(CatalogError):
    """The tagging service could not tag what we asked it to."""


class TaggerAuthError(TaggerError):
    """The tagging service refused the token."""


class TaggerCallFailed(TaggerError):
    """One item's call failed after every retry: the item fails, the run goes on."""


class MalformedAnswer(TaggerCallFailed):
    """The tagging service answered, but not with tags; retrying would not help."""


class CircuitOpen(TaggerError):
    """The tagging service kept failing: the run stopped dispatching, keeping what it tagged."""

    exit_code = 3


class ErrorFamily(NamedTuple):
    """The errors that stand for one HTTP peer's failures: no answer after every retry, a
    refused token (401/403), a bad status or a redirect / Retry-After we will not follow, and
    a body over the size cap."""

    unreachable: type[CatalogError] = CatalogError
    refused: type[CatalogError] = CatalogError
    failed: type[CatalogError] = CatalogError
    oversized: type[CatalogError] = CatalogError


SOURCE_ERRORS = ErrorFamily(
    SourceUnreachable, SourceAuthError, SourceResponseError, SourceResponseError
)
# The tagger's: a call that failed fails its item (and counts for the breaker); an oversized
# answer is the item's problem, not the service's.
TAGGER_ERRORS = ErrorFamily(TaggerCallFailed, TaggerAuthError, TaggerCallFailed, MalformedAnswer)
