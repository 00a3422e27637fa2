"""Options and helpers shared by the run commands."""
from __future__ import annotations

import click

recipe_arg = click.argument("recipe", type=click.Path(dir_okay=False, path_type=str))
site_opt = click.option("--site", "site", type=click.Path(dir_okay=False), default=None,
                        help="Site file binding ${site:...} keys (paths, URLs, secrets).")
set_opt = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                       help="Override a recipe field, e.g. --set agent.max_turns=10 (repeatable).")


def load(recipe: str, site: str | None, overrides: tuple[str, ...]):
    """The loaded recipe with its problems collected, not raised: `assemble` reports them together with its own."""
    from clinseek.recipe import load_recipe

    return load_recipe(recipe, site=site, overrides=overrides, collect=True)


def load_and_assemble(recipe: str, site: str | None, overrides: tuple[str, ...]):
    from clinseek.engine import assemble

    return assemble(load(recipe, site, overrides))
