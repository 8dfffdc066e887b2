"""The ``damas`` command line.

Commands live in modules of this package and are imported only when used, so
``damas --help`` stays fast and a missing optional driver only affects its command:

- ``data``: ``copy``, ``export``, ``import`` (moving elements between stores)
- ``ops``: the tracker operations (``create``, ``read``, ... ``signin``, ``signout``)
- ``serve``: ``serve`` (the HTTP server)
- ``sync``: ``sync`` (agents and the status matrix)
"""

from __future__ import annotations

import importlib

import click

# command name -> (module in damas_core.cli, attribute)
COMMANDS: dict[str, tuple[str, str]] = {
    "copy": ("data", "copy"),
    "export": ("data", "export"),
    "import": ("data", "import_"),
    "serve": ("serve", "serve"),
    "sync": ("sync", "sync"),
    "create": ("ops", "create"),
    "read": ("ops", "read"),
    "update": ("ops", "update"),
    "upsert": ("ops", "upsert"),
    "delete": ("ops", "delete"),
    "graph": ("ops", "graph"),
    "search": ("ops", "search"),
    "search_one": ("ops", "search_one"),
    "search_mongo": ("ops", "search_mongo"),
    "publish": ("ops", "publish"),
    "lock": ("ops", "lock"),
    "unlock": ("ops", "unlock"),
    "comment": ("ops", "comment"),
    "version": ("ops", "version"),
    "signin": ("ops", "signin"),
    "signout": ("ops", "signout"),
    "verify": ("ops", "verify"),
}


class LazyGroup(click.Group):
    """A group whose commands are imported on first use from :data:`COMMANDS`."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(COMMANDS) | set(self.commands))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.commands:
            return self.commands[name]
        if name not in COMMANDS:
            return None
        module_name, attr = COMMANDS[name]
        try:
            module = importlib.import_module(f"damas_core.cli.{module_name}")
        except ModuleNotFoundError as e:
            if e.name != f"damas_core.cli.{module_name}":
                raise
            return None
        return getattr(module, attr)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """damas: track the files of a project across sites."""
