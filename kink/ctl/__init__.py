"""kinkctl, the operator's tool: `kink.ctl.cli` is its entry point, `kink.ctl.commands` its
subcommands (one module each), `decode`/`render` the offline KINK dissector of `kinkctl decode`.
"""
