"""pyimg verbs that turn stored images into bundles (unpack, run, rm-bundle, bundles)."""


def register(app) -> None:
    """Add the bundle verbs to the pyimg typer app."""
