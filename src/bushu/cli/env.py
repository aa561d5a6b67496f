"""`bushu env`: the machine a model runs on (CPU, instruction sets, memory, GPU, runtimes)."""

from __future__ import annotations

import click

from ._output import console, print_json, table


@click.command("env")
@click.option("--json", "as_json", is_flag=True, help="Print the environment as JSON.")
def command(as_json: bool) -> None:
    """CPU model, cores, memory, instruction sets, GPU/driver/CUDA, OS, and installed runtimes."""
    from ..envinfo import environment

    env = environment()
    if as_json:
        print_json(env)
        return
    cpu, mem, gpu = env["cpu"], env["memory"], env["gpu"]
    on = [f for f, v in cpu["isa"].items() if v]
    off = [f for f, v in cpu["isa"].items() if not v]
    console.print(
        f"[bold]CPU[/]     {cpu['model']} ({cpu['arch']}), {cpu['physical_cores']} physical / "
        f"{cpu['logical_cores']} logical cores, {cpu['usable_cores'] or '?'} usable"
    )
    absent = f"  [dim](absent: {' '.join(off)})[/]" if off else ""
    console.print(f"[bold]ISA[/]     {' '.join(on) or cpu['isa_source']}{absent}")
    console.print(f"[bold]Memory[/]  {mem['total_gb']} GiB ({mem['available_gb']} GiB available)")
    if gpu["available"]:
        for d in gpu["devices"]:
            console.print(
                f"[bold]GPU[/]     {d['name']}, {d['memory_mb']} MiB, driver {d['driver']}, CUDA {gpu['cuda']}"
            )
    else:
        console.print(f"[bold]GPU[/]     none ({gpu['reason']})")
    os_name = env["os"].get("name") or env["os"]["platform"]
    console.print(f"[bold]OS[/]      {os_name}; Python {env['python']['version']}")
    rows = [
        {
            "backend": n,
            "installed": "yes" if b["installed"] else "no",
            "version": b["version"],
            "providers/devices": ", ".join(map(str, b.get("providers") or b.get("devices") or []))
            or b.get("probe_error"),
        }
        for n, b in env["backends"].items()
    ]
    table(rows, ["backend", "installed", "version", "providers/devices"], title="Runtimes")
