# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_security_monitor_global_optspecs
    string join \n h/help V/version
end

function __fish_security_monitor_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_security_monitor_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_security_monitor_using_subcommand
    set -l cmd (__fish_security_monitor_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c security-monitor -n "__fish_security_monitor_needs_command" -s h -l help -d 'Print help'
complete -c security-monitor -n "__fish_security_monitor_needs_command" -s V -l version -d 'Print version'
complete -c security-monitor -n "__fish_security_monitor_needs_command" -f -a "check" -d 'Replay log files, or a container\'s own history through the Docker API, through the detector and report what the daemon would do (never banning)'
complete -c security-monitor -n "__fish_security_monitor_needs_command" -f -a "check-config" -d 'Validate a config file (like `nginx -t`); exits non-zero on any error'
complete -c security-monitor -n "__fish_security_monitor_needs_command" -f -a "run" -d 'Run the daemon: follow Docker logs, detect, ban (what systemd starts)'
complete -c security-monitor -n "__fish_security_monitor_needs_command" -f -a "status" -d 'How the running daemon is doing: uptime, firewall, containers and their streams, bans, rates'
complete -c security-monitor -n "__fish_security_monitor_needs_command" -f -a "reload" -d 'Make the running daemon re-read its config (like `systemctl reload security-monitor`)'
complete -c security-monitor -n "__fish_security_monitor_needs_command" -f -a "ban" -d 'Ban an IP now (in the firewall and blocked_ips.json)'
complete -c security-monitor -n "__fish_security_monitor_needs_command" -f -a "unban" -d 'Lift a ban now. Unbanning an IP that is not banned is not an error'
complete -c security-monitor -n "__fish_security_monitor_needs_command" -f -a "list" -d 'List the active bans'
complete -c security-monitor -n "__fish_security_monitor_needs_command" -f -a "restore" -d 'Reconcile blocked_ips.json with the firewall and apply every active ban in one batch (what the daemon does at start)'
complete -c security-monitor -n "__fish_security_monitor_needs_command" -f -a "watch" -d 'Follow the selected containers\' logs through the Docker API and print each line (a debugging tool: what the daemon would read)'
complete -c security-monitor -n "__fish_security_monitor_needs_command" -f -a "remove-firewall" -d 'Remove security-monitor\'s own firewall table/chains/sets (lifts every ban; used by `install.sh --uninstall`)'
complete -c security-monitor -n "__fish_security_monitor_needs_command" -f -a "alerts" -d 'Recent alerts: rule hits, bans, unbans, held bans, error-rate jumps, lost Docker connections (repeats folded, with a count). Without a running daemon, read from the alerts log in state.dir'
complete -c security-monitor -n "__fish_security_monitor_needs_command" -f -a "insights" -d 'The risk summary: a score from 0 to 100, its band, and the signals behind it'
complete -c security-monitor -n "__fish_security_monitor_needs_command" -f -a "health" -d 'Whether the running daemon is well (exit 0) or degraded (exit 1), and why'
complete -c security-monitor -n "__fish_security_monitor_needs_command" -f -a "metrics" -d 'Print the daemon\'s Prometheus metrics (what `metrics.listen` serves over HTTP)'
complete -c security-monitor -n "__fish_security_monitor_needs_command" -f -a "test-notify" -d 'Send a test notice through every configured channel (mail, each webhook) now and report each result; exits non-zero if any failed'
complete -c security-monitor -n "__fish_security_monitor_needs_command" -f -a "completions" -d 'Print shell completions (bash, zsh, fish, elvish, powershell)'
complete -c security-monitor -n "__fish_security_monitor_needs_command" -f -a "rules" -d 'List the rules in effect: built-in and the config\'s own patterns'
complete -c security-monitor -n "__fish_security_monitor_needs_command" -f -a "profiles" -d 'List the application profiles: the images that choose each, its line shapes, what counts as a failure'
complete -c security-monitor -n "__fish_security_monitor_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c security-monitor -n "__fish_security_monitor_using_subcommand check" -s c -l config -d 'Config file (default: /etc/security-monitor/monitor_config.json if it exists, else built-in defaults)' -r -F
complete -c security-monitor -n "__fish_security_monitor_using_subcommand check" -s f -l format -d 'Log format: auto, combined, common, vhost_combined, json, a profile, or a name under "formats" in the config' -r
complete -c security-monitor -n "__fish_security_monitor_using_subcommand check" -s p -l profile -d 'Read the logs as this application profile (`security-monitor profiles` lists them)' -r
complete -c security-monitor -n "__fish_security_monitor_using_subcommand check" -l learn -d 'Learn the baselines from this log first (ordinary traffic; repeatable), then judge LOGFILES. Implies --anomalies' -r -F
complete -c security-monitor -n "__fish_security_monitor_using_subcommand check" -l container -d 'Replay this container\'s past log (through the Docker API, read as the daemon would read it) instead of log files; repeatable. Implies --anomalies' -r
complete -c security-monitor -n "__fish_security_monitor_using_subcommand check" -l since -d 'With --container: the history from this long ago (`24h`, `30m`, `7d`) or this time (`2026-11-21T10:00:00Z`) on [default: 24h]' -r
complete -c security-monitor -n "__fish_security_monitor_using_subcommand check" -l max-lines -d 'With --container: at most this many lines per container, the newest (the report says when this cut the history) [default: 1000000]' -r
complete -c security-monitor -n "__fish_security_monitor_using_subcommand check" -l json -d 'Print one JSON object instead of the report'
complete -c security-monitor -n "__fish_security_monitor_using_subcommand check" -l anomalies -d 'Also judge each request against per-endpoint baselines learned from the logs\' own ordinary traffic, and list what looks unusual'
complete -c security-monitor -n "__fish_security_monitor_using_subcommand check" -s h -l help -d 'Print help'
complete -c security-monitor -n "__fish_security_monitor_using_subcommand check-config" -s h -l help -d 'Print help'
complete -c security-monitor -n "__fish_security_monitor_using_subcommand run" -s c -l config -r -F
complete -c security-monitor -n "__fish_security_monitor_using_subcommand run" -s h -l help -d 'Print help'
complete -c security-monitor -n "__fish_security_monitor_using_subcommand status" -s c -l config -r -F
complete -c security-monitor -n "__fish_security_monitor_using_subcommand status" -l json
complete -c security-monitor -n "__fish_security_monitor_using_subcommand status" -s h -l help -d 'Print help'
complete -c security-monitor -n "__fish_security_monitor_using_subcommand reload" -s c -l config -r -F
complete -c security-monitor -n "__fish_security_monitor_using_subcommand reload" -s h -l help -d 'Print help'
complete -c security-monitor -n "__fish_security_monitor_using_subcommand ban" -l for -d 'How long, e.g. 90s, 10m, 24h, 7d (default: ban.duration with repeat escalation)' -r
complete -c security-monitor -n "__fish_security_monitor_using_subcommand ban" -l reason -d 'Why, kept in blocked_ips.json' -r
complete -c security-monitor -n "__fish_security_monitor_using_subcommand ban" -s c -l config -r -F
complete -c security-monitor -n "__fish_security_monitor_using_subcommand ban" -l fleet -d 'Wait until the fleet has the ban (every host applies it) and say so; needs the running daemon with `fleet` enabled'
complete -c security-monitor -n "__fish_security_monitor_using_subcommand ban" -s h -l help -d 'Print help'
complete -c security-monitor -n "__fish_security_monitor_using_subcommand unban" -s c -l config -r -F
complete -c security-monitor -n "__fish_security_monitor_using_subcommand unban" -l fleet -d 'Lift it on every host of the fleet (each host deletes its own record of it)'
complete -c security-monitor -n "__fish_security_monitor_using_subcommand unban" -s h -l help -d 'Print help'
complete -c security-monitor -n "__fish_security_monitor_using_subcommand list" -s c -l config -r -F
complete -c security-monitor -n "__fish_security_monitor_using_subcommand list" -l fleet -d 'The fleet\'s records instead: each ban\'s origin, rule, expiry and whether this host applied, refused or held it'
complete -c security-monitor -n "__fish_security_monitor_using_subcommand list" -l json
complete -c security-monitor -n "__fish_security_monitor_using_subcommand list" -s h -l help -d 'Print help'
complete -c security-monitor -n "__fish_security_monitor_using_subcommand restore" -s c -l config -r -F
complete -c security-monitor -n "__fish_security_monitor_using_subcommand restore" -l json
complete -c security-monitor -n "__fish_security_monitor_using_subcommand restore" -s h -l help -d 'Print help'
complete -c security-monitor -n "__fish_security_monitor_using_subcommand watch" -s c -l config -d 'Config file (default: /etc/security-monitor/monitor_config.json if it exists, else built-in defaults)' -r -F
complete -c security-monitor -n "__fish_security_monitor_using_subcommand watch" -l state-dir -d 'Keep log cursors in this directory and resume from them (by default `watch` keeps none and starts docker.max_backlog back; never point it at the daemon\'s state.dir while the daemon runs)' -r -F
complete -c security-monitor -n "__fish_security_monitor_using_subcommand watch" -l json -d 'Print one JSON object per line'
complete -c security-monitor -n "__fish_security_monitor_using_subcommand watch" -s h -l help -d 'Print help'
complete -c security-monitor -n "__fish_security_monitor_using_subcommand remove-firewall" -s c -l config -r -F
complete -c security-monitor -n "__fish_security_monitor_using_subcommand remove-firewall" -s h -l help -d 'Print help'
complete -c security-monitor -n "__fish_security_monitor_using_subcommand alerts" -l since -d 'Only alerts seen within this long (`1h`, `30m`) or since this time (`2026-11-21T10:00:00Z`)' -r
complete -c security-monitor -n "__fish_security_monitor_using_subcommand alerts" -l severity -d 'The least severity shown: low, medium, high, critical' -r -f -a "low\t''
medium\t''
high\t''
critical\t''"
complete -c security-monitor -n "__fish_security_monitor_using_subcommand alerts" -l ip -d 'Only alerts about this IP' -r
complete -c security-monitor -n "__fish_security_monitor_using_subcommand alerts" -l container -d 'Only alerts about this container (by name)' -r
complete -c security-monitor -n "__fish_security_monitor_using_subcommand alerts" -l kind -d 'Only alerts of this kind' -r -f -a "rule_hit\t''
ban\t''
unban\t''
held\t''
never_ban\t''
error_rate\t''
docker_disconnected\t''
docker_reconnected\t''
firewall_error\t''
reload_failed\t''
unparsed_lines\t''
anomaly\t''"
complete -c security-monitor -n "__fish_security_monitor_using_subcommand alerts" -s n -l limit -d 'At most this many, the newest' -r
complete -c security-monitor -n "__fish_security_monitor_using_subcommand alerts" -s c -l config -r -F
complete -c security-monitor -n "__fish_security_monitor_using_subcommand alerts" -l json
complete -c security-monitor -n "__fish_security_monitor_using_subcommand alerts" -s h -l help -d 'Print help'
complete -c security-monitor -n "__fish_security_monitor_using_subcommand insights" -s c -l config -r -F
complete -c security-monitor -n "__fish_security_monitor_using_subcommand insights" -l json
complete -c security-monitor -n "__fish_security_monitor_using_subcommand insights" -s h -l help -d 'Print help'
complete -c security-monitor -n "__fish_security_monitor_using_subcommand health" -s c -l config -r -F
complete -c security-monitor -n "__fish_security_monitor_using_subcommand health" -l json
complete -c security-monitor -n "__fish_security_monitor_using_subcommand health" -s h -l help -d 'Print help'
complete -c security-monitor -n "__fish_security_monitor_using_subcommand metrics" -s c -l config -r -F
complete -c security-monitor -n "__fish_security_monitor_using_subcommand metrics" -s h -l help -d 'Print help'
complete -c security-monitor -n "__fish_security_monitor_using_subcommand test-notify" -s c -l config -d 'Config file (default: /etc/security-monitor/monitor_config.json)' -r -F
complete -c security-monitor -n "__fish_security_monitor_using_subcommand test-notify" -s h -l help -d 'Print help'
complete -c security-monitor -n "__fish_security_monitor_using_subcommand completions" -s h -l help -d 'Print help'
complete -c security-monitor -n "__fish_security_monitor_using_subcommand rules" -s c -l config -r -F
complete -c security-monitor -n "__fish_security_monitor_using_subcommand rules" -l json
complete -c security-monitor -n "__fish_security_monitor_using_subcommand rules" -s h -l help -d 'Print help'
complete -c security-monitor -n "__fish_security_monitor_using_subcommand profiles" -l json
complete -c security-monitor -n "__fish_security_monitor_using_subcommand profiles" -s h -l help -d 'Print help'
complete -c security-monitor -n "__fish_security_monitor_using_subcommand help; and not __fish_seen_subcommand_from check check-config run status reload ban unban list restore watch remove-firewall alerts insights health metrics test-notify completions rules profiles help" -f -a "check" -d 'Replay log files, or a container\'s own history through the Docker API, through the detector and report what the daemon would do (never banning)'
complete -c security-monitor -n "__fish_security_monitor_using_subcommand help; and not __fish_seen_subcommand_from check check-config run status reload ban unban list restore watch remove-firewall alerts insights health metrics test-notify completions rules profiles help" -f -a "check-config" -d 'Validate a config file (like `nginx -t`); exits non-zero on any error'
complete -c security-monitor -n "__fish_security_monitor_using_subcommand help; and not __fish_seen_subcommand_from check check-config run status reload ban unban list restore watch remove-firewall alerts insights health metrics test-notify completions rules profiles help" -f -a "run" -d 'Run the daemon: follow Docker logs, detect, ban (what systemd starts)'
complete -c security-monitor -n "__fish_security_monitor_using_subcommand help; and not __fish_seen_subcommand_from check check-config run status reload ban unban list restore watch remove-firewall alerts insights health metrics test-notify completions rules profiles help" -f -a "status" -d 'How the running daemon is doing: uptime, firewall, containers and their streams, bans, rates'
complete -c security-monitor -n "__fish_security_monitor_using_subcommand help; and not __fish_seen_subcommand_from check check-config run status reload ban unban list restore watch remove-firewall alerts insights health metrics test-notify completions rules profiles help" -f -a "reload" -d 'Make the running daemon re-read its config (like `systemctl reload security-monitor`)'
complete -c security-monitor -n "__fish_security_monitor_using_subcommand help; and not __fish_seen_subcommand_from check check-config run status reload ban unban list restore watch remove-firewall alerts insights health metrics test-notify completions rules profiles help" -f -a "ban" -d 'Ban an IP now (in the firewall and blocked_ips.json)'
complete -c security-monitor -n "__fish_security_monitor_using_subcommand help; and not __fish_seen_subcommand_from check check-config run status reload ban unban list restore watch remove-firewall alerts insights health metrics test-notify completions rules profiles help" -f -a "unban" -d 'Lift a ban now. Unbanning an IP that is not banned is not an error'
complete -c security-monitor -n "__fish_security_monitor_using_subcommand help; and not __fish_seen_subcommand_from check check-config run status reload ban unban list restore watch remove-firewall alerts insights health metrics test-notify completions rules profiles help" -f -a "list" -d 'List the active bans'
complete -c security-monitor -n "__fish_security_monitor_using_subcommand help; and not __fish_seen_subcommand_from check check-config run status reload ban unban list restore watch remove-firewall alerts insights health metrics test-notify completions rules profiles help" -f -a "restore" -d 'Reconcile blocked_ips.json with the firewall and apply every active ban in one batch (what the daemon does at start)'
complete -c security-monitor -n "__fish_security_monitor_using_subcommand help; and not __fish_seen_subcommand_from check check-config run status reload ban unban list restore watch remove-firewall alerts insights health metrics test-notify completions rules profiles help" -f -a "watch" -d 'Follow the selected containers\' logs through the Docker API and print each line (a debugging tool: what the daemon would read)'
complete -c security-monitor -n "__fish_security_monitor_using_subcommand help; and not __fish_seen_subcommand_from check check-config run status reload ban unban list restore watch remove-firewall alerts insights health metrics test-notify completions rules profiles help" -f -a "remove-firewall" -d 'Remove security-monitor\'s own firewall table/chains/sets (lifts every ban; used by `install.sh --uninstall`)'
complete -c security-monitor -n "__fish_security_monitor_using_subcommand help; and not __fish_seen_subcommand_from check check-config run status reload ban unban list restore watch remove-firewall alerts insights health metrics test-notify completions rules profiles help" -f -a "alerts" -d 'Recent alerts: rule hits, bans, unbans, held bans, error-rate jumps, lost Docker connections (repeats folded, with a count). Without a running daemon, read from the alerts log in state.dir'
complete -c security-monitor -n "__fish_security_monitor_using_subcommand help; and not __fish_seen_subcommand_from check check-config run status reload ban unban list restore watch remove-firewall alerts insights health metrics test-notify completions rules profiles help" -f -a "insights" -d 'The risk summary: a score from 0 to 100, its band, and the signals behind it'
complete -c security-monitor -n "__fish_security_monitor_using_subcommand help; and not __fish_seen_subcommand_from check check-config run status reload ban unban list restore watch remove-firewall alerts insights health metrics test-notify completions rules profiles help" -f -a "health" -d 'Whether the running daemon is well (exit 0) or degraded (exit 1), and why'
complete -c security-monitor -n "__fish_security_monitor_using_subcommand help; and not __fish_seen_subcommand_from check check-config run status reload ban unban list restore watch remove-firewall alerts insights health metrics test-notify completions rules profiles help" -f -a "metrics" -d 'Print the daemon\'s Prometheus metrics (what `metrics.listen` serves over HTTP)'
complete -c security-monitor -n "__fish_security_monitor_using_subcommand help; and not __fish_seen_subcommand_from check check-config run status reload ban unban list restore watch remove-firewall alerts insights health metrics test-notify completions rules profiles help" -f -a "test-notify" -d 'Send a test notice through every configured channel (mail, each webhook) now and report each result; exits non-zero if any failed'
complete -c security-monitor -n "__fish_security_monitor_using_subcommand help; and not __fish_seen_subcommand_from check check-config run status reload ban unban list restore watch remove-firewall alerts insights health metrics test-notify completions rules profiles help" -f -a "completions" -d 'Print shell completions (bash, zsh, fish, elvish, powershell)'
complete -c security-monitor -n "__fish_security_monitor_using_subcommand help; and not __fish_seen_subcommand_from check check-config run status reload ban unban list restore watch remove-firewall alerts insights health metrics test-notify completions rules profiles help" -f -a "rules" -d 'List the rules in effect: built-in and the config\'s own patterns'
complete -c security-monitor -n "__fish_security_monitor_using_subcommand help; and not __fish_seen_subcommand_from check check-config run status reload ban unban list restore watch remove-firewall alerts insights health metrics test-notify completions rules profiles help" -f -a "profiles" -d 'List the application profiles: the images that choose each, its line shapes, what counts as a failure'
complete -c security-monitor -n "__fish_security_monitor_using_subcommand help; and not __fish_seen_subcommand_from check check-config run status reload ban unban list restore watch remove-firewall alerts insights health metrics test-notify completions rules profiles help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
