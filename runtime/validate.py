"""Schema validation of config.json, state.json and the features document.

The checks come from specs/*.json, compiled ahead of time by
scripts/gen_validator.py into runtime/_config_validator.py, so this module
costs almost nothing to import (it never imports jsonschema) and validating a
typical config takes tens of microseconds.  That matters because `create`
validates on every container start.

Scope: these are *schema* checks only (types, required fields, enums,
numeric ranges, a few patterns).  Rules that need the host or cross-field
logic -- duplicate namespace types, duplicate rlimits, "uidMappings need a
user namespace", whether a path exists -- belong to the runtime's own checks.

Integers: a field the spec types as an integer must be an integer literal in
the JSON text (an ``int`` after json.loads).  ``1000.0`` or ``1e3`` is refused,
as runc (Go's encoding/json) refuses it, so a valid config's integer fields
are always Python ints; ``true`` is never an integer.
"""

from runtime import _config_validator as _gen

__all__ = ["SchemaError", "validate_config", "validate_state", "validate_features"]


class SchemaError(ValueError):
    """A document does not match its schema.

    Attributes:
        field:    where, as a dotted path: ``process.user.uid``,
                  ``mounts[2].destination``, ``linux.sysctl["net.core.somaxconn"]``;
                  ``(document)`` when the top-level value itself is wrong.
        problem:  what is wrong, one line, e.g. ``is required`` or
                  ``must fit in uint32 (0..4294967295) (got -1)``.
        document: the file name used in the message (``config.json`` by default).

    ``str(e)`` is ``f"{document}: {field}: {problem}"`` on a single line.
    """

    def __init__(self, field: str, problem: str, document: str = "config.json"):
        super().__init__(f"{document}: {field}: {problem}")
        self.field = field
        self.problem = problem
        self.document = document


def _run(check, doc: object, document: str) -> None:
    try:
        check(doc)
    except _gen.Invalid as e:
        # `from None`: the generated frame adds nothing a user could act on.
        raise SchemaError(e.field, e.problem, document) from None


def validate_config(cfg: dict) -> None:
    """Check a parsed config.json against specs/config-schema.json.

    Returns None if valid; raises SchemaError describing the first violation.
    Unknown properties are accepted (runtime-spec "Extensibility").
    """
    _run(_gen.check_config, cfg, "config.json")


def validate_state(state: dict) -> None:
    """Check a container state document against specs/state-schema.json.

    Raises SchemaError (document ``state.json``) for the first violation.
    """
    _run(_gen.check_state, state, "state.json")


def validate_features(features: dict) -> None:
    """Check a features document against specs/features-schema.json.

    Raises SchemaError (document ``features.json``) for the first violation.
    Unlike config.json, unknown properties are rejected, as features.md requires.
    """
    _run(_gen.check_features, features, "features.json")
