"""kinkd, the KINK daemon (issue 6): trio around the sans-IO engine.

Modules: main (command line), runner (the Daemon: engine, actions in order, timers, reload,
stop), transport (UDP port 910), helper_client (kink_privsep over its Unix socket),
helper_args (engine actions and policies <-> the helper protocol), kerberos_worker (blocking
KDC calls in a thread), control + control_protocol (the kinkctl socket) + sa_report (its `sas`
answer), state (epoch persistence, RFC 4430 §3.7), privileges (root -> configured user,
systemd sockets), notify (sd_notify), logs (logging setup). config (by the config helper)
reads kink.toml.
"""
