"""The kinkctl subcommands, one module each exposing COMMAND (a kink.ctl.command.Command);
kink.ctl.cli lists them."""
