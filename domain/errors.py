"""Domain errors, named after the rule that was broken, carrying the data that broke it.

Exception tree::

    StepwellError
    ├── UnknownHistoryType          a stored row names a type this build does not know
    ├── RunAlreadyFinished          a transition was asked of a run in a final status
    ├── RunNotFound                 no history for the run id
    ├── VersionConflict             another writer appended to the run first
    ├── SignalConflict              another run's live wait already holds a signal
    ├── InvalidFunctionConfig       a synced function config breaks a protocol rule
    └── InvalidEvent                an ingested event breaks a protocol rule

User (SDK) failures are not exceptions here: they travel as data in ``StepErrored`` /
``StepFailed`` / ``RunFailed`` so that they can be memoized and shown; these classes are for
the server's own rule violations.
"""

from __future__ import annotations


class StepwellError(Exception):
    """Base of every error Stepwell raises on purpose."""


class UnknownHistoryType(StepwellError):
    def __init__(self, type_name: str) -> None:
        super().__init__(f"unknown history event type {type_name!r}")
        self.type_name = type_name


class RunAlreadyFinished(StepwellError):
    def __init__(self, run_id: str, status: str) -> None:
        super().__init__(f"run {run_id} already finished with status {status}")
        self.run_id = run_id
        self.status = status


class RunNotFound(StepwellError):
    def __init__(self, run_id: str) -> None:
        super().__init__(f"run {run_id} not found")
        self.run_id = run_id


class VersionConflict(StepwellError):
    """Raised by a history store when ``expected_version`` is no longer the run's version."""

    def __init__(self, run_id: str, expected_version: int) -> None:
        super().__init__(f"run {run_id} moved past version {expected_version}")
        self.run_id = run_id
        self.expected_version = expected_version


class SignalConflict(StepwellError):
    """Raised by the pause store when a wait for a signal finds another run waiting on it.

    ``signals`` are those of the refused pauses that another pause still held when the store
    looked; empty when the holder went away meanwhile (then simply try again).
    """

    def __init__(self, run_id: str, signals: frozenset[str]) -> None:
        super().__init__(f"run {run_id}: signals already waited on: {sorted(signals)}")
        self.run_id = run_id
        self.signals = signals


class InvalidFunctionConfig(StepwellError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class InvalidEvent(StepwellError):
    def __init__(self, index: int, message: str) -> None:
        super().__init__(f"event {index}: {message}")
        self.index = index
        self.message = message
