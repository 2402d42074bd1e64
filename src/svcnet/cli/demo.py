"""`svcnet demo`: the chapter's story against a running `svcnet up`."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)


def demo(
    data_dir: Annotated[Path, typer.Option(help="The data directory `svcnet up` runs with.")] = Path(
        "./svcnet-data"
    ),
) -> None:
    """Walk the chapter's story against the running cluster and print what the clients saw."""
    from rich.console import Console

    from svcnet.lab.demo import Demo

    console = Console()
    lab_dir = data_dir / "lab" if (data_dir / "lab" / "lab.json").exists() else data_dir

    async def main() -> bool:
        try:
            d = Demo(lab_dir)
        except FileNotFoundError as e:
            console.print(f"svcnet demo: {e}; start the cluster first with `svcnet up` (or `make run`)")
            return False
        ok = True
        try:
            for i, step in enumerate(d.steps()):
                result = await step()
                mark = "[green]ok[/green]" if result.ok else "[red]unexpected[/red]"
                console.print(f"\n[bold]{i}. {result.title}[/bold]  {mark}")
                for line in result.lines:
                    console.print(f"   {line}", highlight=False)
                ok = ok and result.ok
        finally:
            await d.close()
        return ok

    if not asyncio.run(main()):
        sys.exit(1)
