"""`svcnet datastore migrate`: move a cluster's state from one datastore to another."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated

import typer

datastore_app = typer.Typer(
    help="Datastore maintenance (migration between SQLite and etcd).", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    app.add_typer(datastore_app, name="datastore")


@datastore_app.command("migrate")
def migrate_command(
    source: Annotated[str, typer.Option("--from", help="Source datastore: sqlite://DIR or etcd://HOST:PORT[,...].")],
    target: Annotated[str, typer.Option("--to", help="Target datastore: etcd://HOST:PORT[,...] or sqlite://DIR.")],
    force: Annotated[
        bool,
        typer.Option(help="Write into a target that already holds keys (same-named objects are replaced)."),
    ] = False,
    mapping: Annotated[
        Path | None, typer.Option(help="Write the source->target revision mapping here as JSON.")
    ] = None,
    etcd_cafile: Annotated[Path | None, typer.Option(help="CA of the etcd members (either side).")] = None,
    etcd_certfile: Annotated[Path | None, typer.Option(help="Client certificate for etcd.")] = None,
    etcd_keyfile: Annotated[Path | None, typer.Option(help="Key of --etcd-certfile.")] = None,
) -> None:
    """Copy every object of --from into --to, keeping resourceVersions where the target allows
    (docs/datastore.md). Stop the API servers of the source first."""
    from svcnet.store import StoreError, open_store
    from svcnet.store.migrate import MigrationError, migrate
    from svcnet.store.url import etcd_tls, parse_datastore_url

    tls_files = [str(f) if f else None for f in (etcd_cafile, etcd_certfile, etcd_keyfile)]
    stores = []
    parsed_urls = []
    for flag, url in (("--from", source), ("--to", target)):
        try:
            parsed = parse_datastore_url(url)
            tls = etcd_tls(parsed, *tls_files) if parsed.kind == "etcd" else None
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint=flag) from exc
        if parsed.kind == "sqlite" and flag == "--from" and not Path(parsed.path).exists():
            raise typer.BadParameter(f"no SQLite datastore at {parsed.path}", param_hint=flag)
        parsed_urls.append(parsed)
        stores.append(open_store(url, tls=tls, compact_interval=0))
    if parsed_urls[0] == parsed_urls[1]:
        raise typer.BadParameter("--from and --to name the same datastore", param_hint="--to")

    def progress(done: int, total: int) -> None:
        if done == total or done % 1000 == 0:
            print(f"  copied {done}/{total} revisions", file=sys.stderr, flush=True)

    async def run() -> None:
        src, dst = stores
        try:
            await src.start()
            await dst.start()
            report = await migrate(src, dst, force=force, progress=progress)
        finally:
            for store in (src, dst):
                await store.close()
        print(f"migrated {report.keys} keys ({report.revisions} source revisions) from {source} to {target}")
        moved = report.keys - report.kept
        if report.kept and all(new >= old for old, new in report.mapping.items()):
            note = f" ({moved} below the target's first free revision moved up to it)" if moved else ""
            print(f"resourceVersions kept for {report.kept} of {report.keys} keys{note}"
                  f"; target revision {report.target_revision} (source was at {report.source_revision})")
        else:
            print(f"resourceVersions renumbered in the same order ({moved} of {report.keys} keys changed); "
                  "clients must relist")
        if report.overwritten:
            print(f"{report.overwritten} keys replaced keys the target already held")
        if mapping is not None:
            mapping.write_text(json.dumps({str(k): v for k, v in report.mapping.items()}, indent=0) + "\n")
            print(f"revision mapping written to {mapping}")

    try:
        asyncio.run(run())
    except (MigrationError, StoreError) as exc:
        print(f"svcnet datastore migrate: {exc}", file=sys.stderr)
        raise typer.Exit(1) from exc
