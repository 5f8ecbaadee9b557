"""Small domain exceptions. Each carries the offending value in its message."""

from __future__ import annotations


class TortaError(Exception):
    """Base of TORTA's domain errors: the CLI prints the message and exits 2."""


class InputError(TortaError, ValueError):
    """Bad input data: names the file, the line or row, the field and what was expected."""

    def __init__(self, path: object, message: str, *, line: int | None = None,
                 field: str | None = None) -> None:
        self.path = str(path)
        self.line = line
        self.field = field
        self.detail = message
        where = self.path
        if line is not None:
            where += f":{line}"
        if field is not None:
            where += f" [{field}]"
        super().__init__(f"{where}: {message}")


class UnknownNameError(TortaError, KeyError):
    """An unknown scenario, policy, trace, model, GPU... lists the valid names."""

    def __init__(self, kind: str, name: str, valid: list[str] | tuple[str, ...]) -> None:
        self.kind, self.name, self.valid = kind, name, sorted(valid)
        super().__init__(f"unknown {kind} {name!r}; valid: {', '.join(self.valid)}")

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.args[0]


class NonFiniteError(TortaError, ValueError):
    """A NaN or infinite value where a finite number is required; names its origin."""

    def __init__(self, origin: str, value: object, expected: str = "a finite number") -> None:
        self.origin, self.value = origin, value
        super().__init__(f"{origin}: {value!r} is not finite; expected {expected}")


class LimitError(TortaError, ValueError):
    """A run reached a documented bound (simulated-time horizon, slot budget) and stopped."""


class OutputError(TortaError):
    """An output could not be written (disk full, file too large, permission); nothing was left half-written."""
