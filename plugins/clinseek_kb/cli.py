"""`clinseek kb build|ingest|search|info RECIPE`: thin commands over clinseek_kb.library."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import click

recipe_arg = click.argument("recipe", type=click.Path(dir_okay=False, path_type=str))
site_opt = click.option("--site", "site", type=click.Path(dir_okay=False), default=None,
                        help="Site file binding ${site:...} keys (paths, URLs, API keys).")
set_opt = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                       help="Override a recipe field (repeatable).")


def kb_from_recipe(recipe: str, site: str | None, overrides: tuple[str, ...]) -> tuple[Any, Any]:
    """(KbConfig, context) of the recipe's `kb` tool."""
    from pydantic import ValidationError

    from clinseek.errors import UserError
    from clinseek.recipe import load_recipe
    from clinseek_kb.config import KbConfig

    loaded = load_recipe(recipe, site=site, overrides=overrides)
    uses = [(i, t) for i, t in enumerate(loaded.recipe.tools) if t.use == "kb"]
    if not uses:
        raise UserError("this recipe has no kb tool", where=recipe,
                        hint="add `- use: kb` under tools:, with the knowledge base settings under `with:`")
    index, use = uses[0]
    try:
        config = KbConfig.model_validate(use.with_)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'with'}: {e['msg']}" for e in exc.errors())
        raise UserError(f"invalid kb settings: {problems}", where=loaded.where(("tools", index, "with"))) from None
    try:
        from clinseek.engine import RunContext

        context: Any = RunContext(recipe_dir=loaded.dir)
    except ImportError:  # engine not importable: the same facts, minus the run
        from types import SimpleNamespace

        from clinseek_kb.embedder import default_cache_dir

        context = SimpleNamespace(recipe_dir=loaded.dir, cache_dir=default_cache_dir(),
                                  warn=lambda t: click.echo(f"warning: {t}", err=True))
    return config, context


def _say(text: str) -> None:
    click.echo(text, err=True)


@contextmanager
def _server(config: Any) -> Iterator[None]:
    """A Qdrant server that does not answer is one message (exit 2), not a traceback."""
    if not config.url:
        yield
        return
    from clinseek.errors import UserError
    from clinseek_kb.store import describe_location, server_errors, server_problem

    try:
        yield
    except server_errors() as exc:
        raise UserError(f"cannot use the knowledge base at {describe_location(config.url, None)}: "
                        f"{server_problem(exc)}",
                        hint="start the Qdrant server, or correct `url:` (and `api_key:`) in the recipe's kb tool") \
            from None


@click.group("kb")
def kb() -> None:
    """Build, fill and search the local medical knowledge base a recipe's kb tool uses."""


@kb.command("build")
@recipe_arg
@click.option("--collection", "collections", multiple=True, help="Only this collection (repeatable).")
@click.option("--rebuild", is_flag=True, help="Rebuild even if up to date (site collections are emptied).")
@site_opt
@set_opt
def build(recipe: str, collections: tuple[str, ...], rebuild: bool, site: str | None,
          overrides: tuple[str, ...]) -> None:
    """Build every collection the recipe's kb tool names (built-ins from their sources)."""
    from clinseek_kb.library import build_collections

    config, context = kb_from_recipe(recipe, site, overrides)
    with _server(config):
        for row in build_collections(config, context, names=collections or None, rebuild=rebuild, log=_say):
            state = f"built in {row['seconds']:.1f}s" if row["built"] else "up to date"
            click.echo(f"{row['collection']}: {row['chunks']} chunks, {state}")


@kb.command("ingest")
@recipe_arg
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option("--collection", required=True, help="The site collection to add the documents to.")
@site_opt
@set_opt
def ingest(recipe: str, paths: tuple[str, ...], collection: str, site: str | None,
           overrides: tuple[str, ...]) -> None:
    """Add Markdown, text, HTML or JSONL documents; re-ingesting a file replaces its chunks."""
    from clinseek_kb.library import ingest as ingest_files

    config, context = kb_from_recipe(recipe, site, overrides)
    with _server(config):
        result = ingest_files(config, collection, paths, context, log=_say)
    click.echo(f"{collection}: {result['chunks']} chunks from {len(result['files'])} file(s); "
               f"{result['total']} in the collection")
    if collection not in config.collections:
        click.echo(f"note: {collection!r} is not in the recipe's kb collections, so the agent will not search "
                   "it until you add it", err=True)


@kb.command("search")
@recipe_arg
@click.argument("query")
@click.option("--collection", default=None, help="Search only this collection.")
@click.option("--limit", type=click.IntRange(1, 50), default=None, help="At most this many passages.")
@click.option("--mode", type=click.Choice(["sparse", "dense", "hybrid"]), default=None,
              help="Retrieval mode (default: the recipe's).")
@site_opt
@set_opt
def search(recipe: str, query: str, collection: str | None, limit: int | None, mode: str | None,
           site: str | None, overrides: tuple[str, ...]) -> None:
    """Show what the agent's kb_search would return for QUERY."""
    from clinseek_kb.library import search as run_search
    from clinseek_kb.render import render_hits

    config, context = kb_from_recipe(recipe, site, overrides)
    mode = mode or config.mode()
    with _server(config):
        hits = run_search(config, query, context, collection=collection, limit=limit, mode=mode)
    click.echo(render_hits(query, hits, mode=mode, collections=[collection] if collection else config.collections,
                           passage_chars=config.passage_chars, max_chars=config.max_chars))


@kb.command("info")
@recipe_arg
@site_opt
@set_opt
def info(recipe: str, site: str | None, overrides: tuple[str, ...]) -> None:
    """List the recipe's collections: points, embedder, and how each was built."""
    from clinseek_kb.store import Store

    config, context = kb_from_recipe(recipe, site, overrides)
    with _server(config), Store.from_config(config, context) as store:
        click.echo(store.location)
        for name in config.collections:
            if not store.exists(name):
                click.echo(f"{name}: missing (clinseek kb build {recipe})")
                continue
            meta = store.info(name)
            emb = meta.get("embedder")
            click.echo(f"{name}: {store.count(name)} points, embedder "
                       f"{emb['model'] + ' ' + emb['weights'] if emb else 'none (sparse only)'}, "
                       f"chunks of {meta.get('chunk_chars')} chars, "
                       f"{'complete' if meta.get('complete') else 'INCOMPLETE: rebuild'}")
